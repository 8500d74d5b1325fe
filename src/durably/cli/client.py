"""The CLI's view of the admin API: one small synchronous client and the exit codes.

Every failure becomes a `CliError` carrying one readable line and an exit code scripts can
rely on; the commands never print a stack trace.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

__all__ = [
    "EXIT_ABORTED",
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "AdminClient",
    "CliError",
]

EXIT_OK = 0
EXIT_ERROR = 1  # the server answered with an error not covered below (bad SQL, 5xx, ...)
EXIT_USAGE = 2  # bad command line (typer/click's own code)
EXIT_NOT_FOUND = 3  # the deployment, service or invocation does not exist
EXIT_REFUSED = 4  # the server refused: 409 conflict (e.g. already completed), refused query
EXIT_ABORTED = 5  # a confirmation prompt was declined (or could not be asked)
EXIT_UNREACHABLE = 6  # no admin API at that URL (connection refused, DNS, timeout)


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _server_message(response: httpx.Response) -> str:
    text = response.text.strip()
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return text or response.reason_phrase
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return text


def _code_for(status: int, message: str) -> int:
    if status == 404:
        return EXIT_NOT_FOUND
    if status == 409 or (status == 400 and message.startswith("Query refused")):
        return EXIT_REFUSED
    return EXIT_ERROR


class AdminClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        from durably.client._model import auth_headers, tls_verify

        # the admin token and CA file from the environment, as durably.client reads them
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers=auth_headers("admin"),
            verify=tls_verify(None),
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as e:
            raise CliError(
                f"cannot reach the admin API at {self.base_url} ({_reason(e)}); is durably "
                "running? (set --admin-url or DURABLY_ADMIN_URL)",
                EXIT_UNREACHABLE,
            ) from None
        except httpx.TimeoutException:
            raise CliError(
                f"the admin API at {self.base_url} did not answer in time", EXIT_UNREACHABLE
            ) from None
        except httpx.HTTPError as e:
            raise CliError(f"request to {self.base_url} failed: {e}", EXIT_UNREACHABLE) from None
        if response.status_code >= 400:
            message = _server_message(response)
            raise CliError(message, _code_for(response.status_code, message))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise CliError(f"{path}: the server answered something that is not JSON") from None

    def query(self, sql: str) -> list[dict[str, Any]]:
        doc = self.json(
            "POST", "/query", json={"query": sql}, headers={"accept": "application/json"}
        )
        rows = doc.get("rows") if isinstance(doc, dict) else None
        if not isinstance(rows, list):
            raise CliError("/query: unexpected answer (no rows)")
        return rows


def _reason(e: Exception) -> str:
    text = str(e)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(e).__name__


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
