"""Typed errors: each carries the HTTP status and a message that says how to fix the problem."""

from __future__ import annotations

from typing import Any


class ApplianceError(Exception):
    """Base error. The HTTP middleware turns it into the API family's error shape."""

    status: int = 500
    error_type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }


class BadRequest(ApplianceError):
    status = 400
    error_type = "invalid_request_error"


class Unauthorized(ApplianceError):
    status = 401
    error_type = "authentication_error"


class Forbidden(ApplianceError):
    status = 403
    error_type = "permission_error"


class NotFound(ApplianceError):
    status = 404
    error_type = "not_found_error"


class Conflict(ApplianceError):
    status = 409
    error_type = "conflict_error"


class RequestTimeout(ApplianceError):
    status = 408
    error_type = "invalid_request_error"


class PayloadTooLarge(ApplianceError):
    status = 413
    error_type = "invalid_request_error"


class Overloaded(ApplianceError):
    """The model's queue is full; the client should retry after a while."""

    status = 503
    error_type = "overloaded_error"

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message, code="queue_full", headers={"Retry-After": str(retry_after)})


class SettingsError(ApplianceError):
    """An invalid value in appliance.toml or an APPLIANCE_* variable."""

    status = 500
    error_type = "settings_error"


class PluginError(ApplianceError):
    """A plugin broke a rule the core enforces (for example a duplicate model name)."""

    status = 500
    error_type = "plugin_error"
