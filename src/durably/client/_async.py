"""``AsyncClient``: the awaitable twin of ``Client``. Every request and answer goes through
``_model``; this module only sends them over an ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from typing_extensions import TypeVar

from durably.client import _model as m
from durably.client.serde import NO_INPUT

T = TypeVar("T", default=Any)

__all__ = [
    "AsyncClient",
    "AsyncInvocationHandle",
    "AsyncObjectClient",
    "AsyncSendHandle",
    "AsyncServiceClient",
    "AsyncWorkflowClient",
]


class AsyncClient:
    """A pooled, reusable client for a durably (or Restate) server.

    ``url`` is the ingress (default: ``$DURABLY_URL``, ``$RESTATE_URL``,
    ``http://localhost:8080``); ``admin_url`` the admin API used by cancel/kill/purge
    (``$DURABLY_ADMIN_URL``, ``$RESTATE_ADMIN_URL``, ``http://localhost:9070``).
    ``headers`` go with every request (e.g. authorization). ``timeout`` is httpx's: by
    default only connecting is bounded, since calls and attaches wait for handlers.
    ``retry=True`` (or a ``RetryPolicy``) retries errors that are safe and transient.
    Bearer tokens come from ``$DURABLY_INGRESS_TOKEN`` and ``$DURABLY_ADMIN_TOKEN`` unless
    ``headers`` carry an authorization; ``ca_file`` (or ``$DURABLY_CA_FILE``) verifies a
    server whose TLS certificate no system CA signed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        admin_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout | None = m.DEFAULT_TIMEOUT,
        retry: bool | m.RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.url = m.ingress_url(url)
        self.admin_url = m.admin_url(admin_url)
        self.retry = m.retry_policy(retry)
        self.headers: dict[str, str] = dict(headers or {})
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=timeout, verify=m.tls_verify(ca_file)
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool (only when this client created it)."""
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- targets -------------------------------------------------------------------------

    def service(self, name: str) -> AsyncServiceClient:
        """Handlers of the service ``name``."""
        return AsyncServiceClient(self, name)

    def object(self, name: str, key: str) -> AsyncObjectClient:
        """Handlers of the virtual object ``name`` with key ``key``."""
        return AsyncObjectClient(self, name, key)

    def workflow(self, name: str, workflow_id: str) -> AsyncWorkflowClient:
        """The workflow ``name`` run with id ``workflow_id`` and its shared handlers."""
        return AsyncWorkflowClient(self, name, workflow_id)

    def invocation(self, invocation_id: str) -> AsyncInvocationHandle:
        """An invocation by its id (``inv_...``)."""
        return AsyncInvocationHandle(self, m.InvocationRef.by_id(invocation_id))

    # -- generic calls (what the target clients use) ---------------------------------------

    async def call(
        self,
        service: str,
        handler: str,
        input: Any = NO_INPUT,
        *,
        key: str | None = None,
        output: type[T] | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        content_type: str | None = None,
        _workflow: bool = False,
    ) -> T:
        """Call ``service[/key]/handler`` and wait for its result."""
        request = m.call_request(
            self.url, service, handler, input, key=key, send=False,
            idempotency_key=idempotency_key, delay=None, headers=headers, timeout=timeout,
            content_type=content_type, workflow=_workflow,
        )
        result: T = m.decode_output(await self._execute(request), output)
        return result

    async def send(
        self,
        service: str,
        handler: str,
        input: Any = NO_INPUT,
        *,
        key: str | None = None,
        delay: m.Delay | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        content_type: str | None = None,
        _workflow_run: bool = False,
    ) -> AsyncSendHandle:
        """Start ``service[/key]/handler`` without waiting; returns a handle to it."""
        request = m.call_request(
            self.url, service, handler, input, key=key, send=True,
            idempotency_key=idempotency_key, delay=delay, headers=headers, timeout=timeout,
            content_type=content_type, workflow=_workflow_run, workflow_run=_workflow_run,
        )
        return AsyncSendHandle(self, m.parse_send(await self._execute(request)))

    # -- awakeables ------------------------------------------------------------------------

    async def resolve_awakeable(
        self,
        awakeable_id: str,
        value: Any = None,
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Complete the awakeable ``awakeable_id`` (``sign_1...``) with ``value``."""
        await self._execute(
            m.awakeable_request(
                self.url, awakeable_id, resolve=True, value=value,
                content_type=content_type, headers=headers, timeout=timeout,
            )
        )

    async def reject_awakeable(
        self,
        awakeable_id: str,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Fail the awakeable: the waiting handler sees a terminal error (code 500)."""
        await self._execute(
            m.awakeable_request(
                self.url, awakeable_id, resolve=False, value=reason, headers=headers,
                timeout=timeout,
            )
        )

    # -- transport -------------------------------------------------------------------------

    async def _execute(self, request: m.Request) -> httpx.Response:
        attempt = 1
        while True:
            try:
                response = await self._http.request(
                    request.method,
                    request.url,
                    content=request.content,
                    headers=m.merge_headers(self.headers, request.headers, request.kind),
                    params=request.params or None,
                    timeout=httpx.USE_CLIENT_DEFAULT if request.timeout is None else request.timeout,
                )
            except httpx.HTTPError as exc:
                error = m.transport_error(exc, request)
                cause: BaseException | None = exc
            else:
                maybe = m.error_for(response, request)
                if maybe is None:
                    return response
                error, cause = maybe, None
            delay = self.retry.next_delay(error, attempt) if self.retry else None
            if delay is None:
                raise error from cause
            await asyncio.sleep(delay)
            attempt += 1


class AsyncInvocationHandle:
    """One invocation, named by id, idempotency key or workflow id."""

    def __init__(self, client: AsyncClient, ref: m.InvocationRef) -> None:
        self._client = client
        self.ref = ref

    @property
    def invocation_id(self) -> str | None:
        """The id, when this handle was made from one (see ``lookup()`` otherwise)."""
        return self.ref.invocation_id

    async def attach(self, *, output: type[T] | None = None, timeout: float | None = None) -> T:
        """Wait for the invocation to finish and return its result (or raise its failure)."""
        result: T = await self._get("attach", output, timeout)
        return result

    async def output(self, *, output: type[T] | None = None, timeout: float | None = None) -> T:
        """The result if the invocation has finished; raises ``NotReady`` if it has not."""
        result: T = await self._get("output", output, timeout)
        return result

    async def _get(self, action: Literal["attach", "output"], output: Any, timeout: float | None) -> Any:
        request = m.attach_request(self._client.url, self.ref, action, timeout=timeout)
        return m.decode_output(await self._client._execute(request), output)

    async def lookup(self, *, timeout: float | None = None) -> str:
        """The invocation id (``POST /restate/lookup``, Restate 1.7+ and durably)."""
        if self.ref.invocation_id is not None:
            return self.ref.invocation_id
        request = m.lookup_request(self._client.url, self.ref, timeout=timeout)
        return m.parse_lookup(await self._client._execute(request))

    async def cancel(self, *, timeout: float | None = None) -> None:
        """Ask the invocation to stop: it sees a terminal error (409) at its next await."""
        await self._admin("cancel", timeout)

    async def kill(self, *, timeout: float | None = None) -> None:
        """End the invocation at once, without running its compensations."""
        await self._admin("kill", timeout)

    async def purge(self, *, timeout: float | None = None) -> None:
        """Forget a completed invocation: its result, idempotency key and journal."""
        await self._admin("purge", timeout)

    async def _admin(self, operation: Literal["cancel", "kill", "purge"], timeout: float | None) -> None:
        request = m.admin_request(self._client.admin_url, await self.lookup(), operation, timeout=timeout)
        await self._client._execute(request)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ref})"


class AsyncSendHandle(AsyncInvocationHandle):
    """The answer to a send: the invocation id and whether it was new."""

    def __init__(self, client: AsyncClient, result: m.SendResult) -> None:
        super().__init__(client, m.InvocationRef.by_id(result.invocation_id))
        self.status: str = result.status
        self.execution_time: dt.datetime | None = result.execution_time

    @property
    def invocation_id(self) -> str:
        assert self.ref.invocation_id is not None
        return self.ref.invocation_id

    def __repr__(self) -> str:
        return f"AsyncSendHandle({self.invocation_id!r}, status={self.status!r})"


class AsyncServiceClient:
    """Calls, sends and idempotency-key lookups for one service (or, with a key, object)."""

    def __init__(self, client: AsyncClient, name: str, key: str | None = None) -> None:
        self._client = client
        self.name = name
        self.key = key

    async def call(
        self,
        handler: str,
        input: Any = NO_INPUT,
        *,
        output: type[T] | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        content_type: str | None = None,
    ) -> T:
        """Call ``handler`` and wait for its result, validated as ``output``."""
        return await self._client.call(
            self.name, handler, input, key=self.key, output=output,
            idempotency_key=idempotency_key, headers=headers, timeout=timeout,
            content_type=content_type, _workflow=isinstance(self, AsyncWorkflowClient),
        )

    async def send(
        self,
        handler: str,
        input: Any = NO_INPUT,
        *,
        delay: m.Delay | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        content_type: str | None = None,
    ) -> AsyncSendHandle:
        """Start ``handler`` (after ``delay``: a timedelta or seconds) without waiting."""
        return await self._client.send(
            self.name, handler, input, key=self.key, delay=delay,
            idempotency_key=idempotency_key, headers=headers, timeout=timeout,
            content_type=content_type,
        )

    def invocation(self, handler: str, *, idempotency_key: str) -> AsyncInvocationHandle:
        """The invocation of ``handler`` made with ``idempotency_key``."""
        ref = m.InvocationRef.by_idempotency_key(self.name, handler, idempotency_key, self.key)
        return AsyncInvocationHandle(self._client, ref)

    def __repr__(self) -> str:
        keyed = f", {self.key!r}" if self.key is not None else ""
        return f"{type(self).__name__}({self.name!r}{keyed})"


class AsyncObjectClient(AsyncServiceClient):
    """Handlers of one virtual object instance (``key``)."""

    key: str

    def __init__(self, client: AsyncClient, name: str, key: str) -> None:
        super().__init__(client, name, key)


class AsyncWorkflowClient(AsyncObjectClient):
    """One workflow run (``workflow_id``) and its shared handlers."""

    def __init__(self, client: AsyncClient, name: str, workflow_id: str) -> None:
        super().__init__(client, name, workflow_id)
        self.handle = AsyncInvocationHandle(client, m.InvocationRef.by_workflow(name, workflow_id))

    @property
    def workflow_id(self) -> str:
        return self.key

    async def submit(
        self,
        input: Any = NO_INPUT,
        *,
        handler: str = "run",
        delay: m.Delay | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        content_type: str | None = None,
    ) -> AsyncSendHandle:
        """Start the run (once per workflow id: a repeat answers ``PreviouslyAccepted``)."""
        return await self._client.send(
            self.name, handler, input, key=self.key, delay=delay, headers=headers,
            timeout=timeout, content_type=content_type, _workflow_run=True,
        )

    async def attach(self, *, output: type[T] | None = None, timeout: float | None = None) -> T:
        """Wait for the run to finish and return its result."""
        return await self.handle.attach(output=output, timeout=timeout)

    async def output(self, *, output: type[T] | None = None, timeout: float | None = None) -> T:
        """The run's result if finished; ``NotReady`` while running, ``NotFound`` if never run."""
        return await self.handle.output(output=output, timeout=timeout)

    async def cancel(self, *, timeout: float | None = None) -> None:
        """Cancel the run."""
        await self.handle.cancel(timeout=timeout)

    async def kill(self, *, timeout: float | None = None) -> None:
        """Kill the run."""
        await self.handle.kill(timeout=timeout)
