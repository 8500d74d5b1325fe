"""Security: who durably says it is to deployments (request identity), who may call durably
(bearer tokens), and what one caller may cost it (limits on bodies, headers, connections and
time), shared by the ingress and the admin ports."""
