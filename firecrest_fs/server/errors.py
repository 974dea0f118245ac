"""The FirecREST error body and the exception that carries it."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error response: HTTP status, message and optional body data and headers.

    The app turns it into the body every FirecREST error has:
    `{"errorType", "message", "causedBy", "data", "user"}`.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_type: str = "error",
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error_type = error_type
        self.data = data
        self.headers = headers or {}


def error_body(
    message: str,
    *,
    user: str | None,
    error_type: str = "error",
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the error body of the real server; `causedBy` stays null because no SSH is involved."""
    return {
        "errorType": error_type,
        "message": message,
        "causedBy": None,
        "data": data,
        "user": user,
    }
