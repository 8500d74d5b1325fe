"""The error type of schema operations: an HTTP status plus the message Restate would show."""

from __future__ import annotations

__all__ = ["AdminError"]


class AdminError(Exception):
    """A schema/admin operation failed.

    `status` is the HTTP status the admin API answers with, `message` the user-facing text and
    `restate_code` Restate's error code (`META0003`, ...) when Restate reports one, else None.
    The admin API renders it as `{"message": ..., "restate_code": ...}`.
    """

    def __init__(self, status: int, message: str, restate_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.restate_code = restate_code

    def __repr__(self) -> str:
        return f"AdminError({self.status}, {self.message!r}, restate_code={self.restate_code!r})"
