"""A Jepsen-style checker for a durably cluster: mixed load under a nemesis, a recorded
history, and a pure check of it (`history.check`). `python -m tests.cluster.checker`."""
