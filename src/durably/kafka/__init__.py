"""Kafka subscriptions: records on a topic invoke handlers, in order, exactly once.

- `model`: clusters and subscriptions as Restate's admin API shows them, their validation
  and the document they persist as (sans-IO);
- `records`: how one record becomes an invocation (target, key, headers) or a parked record;
- `consumer`: one aiokafka consumer per subscription, feeding the engine;
- `service`: the running set of clusters, subscriptions and consumers;
- `admin`: the admin routes (`/kafka-clusters`, `/subscriptions`, parked records) and their
  OpenAPI; `cli`: `durably subscriptions ...`, `durably kafka-clusters ...`.
"""
