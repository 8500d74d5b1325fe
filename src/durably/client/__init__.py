"""durably.client: call durably (or Restate) handlers from outside, blocking or async.

    from durably.client import Client

    with Client("http://localhost:8080") as c:
        c.service("Greeter").call("greet", "Alice", output=str)

``Client`` and ``AsyncClient`` have the same methods (the async ones are awaitable) and
share one request/response model; see docs/client.md.
"""

from durably.client._async import (
    AsyncClient,
    AsyncInvocationHandle,
    AsyncObjectClient,
    AsyncSendHandle,
    AsyncServiceClient,
    AsyncWorkflowClient,
)
from durably.client._model import DEFAULT_TIMEOUT, InvocationRef, RetryPolicy
from durably.client._sync import (
    Client,
    InvocationHandle,
    ObjectClient,
    SendHandle,
    ServiceClient,
    WorkflowClient,
)
from durably.client.errors import (
    AdminError,
    AlreadyCompleted,
    AlreadyInvoked,
    ClientError,
    ConnectionError,
    IngressError,
    InvocationFailed,
    NotFound,
    NotReady,
    OutputError,
    ResponseError,
    Timeout,
)
from durably.client.serde import NO_INPUT

__all__ = [
    "DEFAULT_TIMEOUT",
    "NO_INPUT",
    "AdminError",
    "AlreadyCompleted",
    "AlreadyInvoked",
    "AsyncClient",
    "AsyncInvocationHandle",
    "AsyncObjectClient",
    "AsyncSendHandle",
    "AsyncServiceClient",
    "AsyncWorkflowClient",
    "Client",
    "ClientError",
    "ConnectionError",
    "IngressError",
    "InvocationFailed",
    "InvocationRef",
    "InvocationHandle",
    "NotFound",
    "NotReady",
    "ObjectClient",
    "OutputError",
    "ResponseError",
    "RetryPolicy",
    "SendHandle",
    "ServiceClient",
    "Timeout",
    "WorkflowClient",
]
