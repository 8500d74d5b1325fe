"""Several durably nodes on one PostgreSQL: partitions, leases, epochs, membership.

The key space is cut into a fixed number of partitions (`placement`). Each partition is
owned by at most one node at a time through a lease row whose expiry the database's clock
decides and whose epoch is a fencing token (`leases`). Nodes announce themselves with a
heartbeat (`leases.Membership`); a `keeper.LeaseKeeper` per node renews what it holds,
takes its even share of what is free, hands everything back on a clean stop, and reports a
lease it lost. `fence.Fence` plugs into the PostgreSQL store so that every commit checks,
in its own transaction, the epochs of the partitions it writes: a former owner that was
paused or cut off can never commit, so nothing it did is acknowledged.

Nothing here is imported by the engine: the engine stays a single-partition-set state
machine, and this room decides which partitions a node's engine may touch.
"""
