"""The failures a request or an attempt can end in, and how an upstream HTTP status is classified."""

from __future__ import annotations

import enum


class FailureKind(enum.StrEnum):
    """How the hedging engine must treat a failed attempt."""

    FAULT = "fault"  # provider's fault (5xx, 529, timeout, connection, bad stream): try the next target
    CLIENT = "client"  # the request itself is bad (400, 401, 403, 404, 422): return it, try nothing else
    RATE_LIMITED = "rate_limited"  # 429: skip this target for Retry-After, try the next
    LOCAL = "local"  # the gateway's own resource (its connection pool) was exhausted: try the next, blame nobody


class GatewayError(Exception):
    """An error that ends a request with an HTTP status, rendered in the door's own error shape."""

    def __init__(self, status: int, message: str, *, type: str = "", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or default_error_type(status)
        self.param = param
        self.code = code


class ProviderError(Exception):
    """An attempt against one provider failed. Never carries a key: messages come from upstream bodies."""

    def __init__(self, kind: FailureKind, message: str, *, status: int | None = None,
                 error_type: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status  # upstream HTTP status, None for connection errors and timeouts
        self.error_type = error_type  # e.g. "timeout", "connection_error", "overloaded_error", "http_500"
        self.retry_after_s = retry_after_s


def classify_status(status: int) -> FailureKind:
    """Map an upstream HTTP status to how the engine treats it."""
    if status == 429:
        return FailureKind.RATE_LIMITED
    if status in (408, 409) or status >= 500:
        return FailureKind.FAULT
    if 400 <= status < 500:
        return FailureKind.CLIENT
    return FailureKind.FAULT


_DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def default_error_type(status: int) -> str:
    return _DEFAULT_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


# Error types an upstream may report that the gateway passes on (as the client's error type, a metric label, a
# span attribute): Anthropic's, OpenAI's (types, and the codes some servers put in `type`), and those of common
# OpenAI-compatible servers. Any other value is free text from upstream (it could even hold the key it was
# sent), so it is never passed on: see `known_error_type`.
KNOWN_ERROR_TYPES = frozenset({
    # Anthropic
    "invalid_request_error", "authentication_error", "billing_error", "permission_error", "not_found_error",
    "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error",
    # OpenAI (and OpenAI-compatible servers)
    "server_error", "insufficient_quota", "requests", "tokens", "rate_limit_exceeded", "invalid_api_key",
    "model_not_found", "context_length_exceeded", "access_terminated", "internal_error", "service_unavailable",
    "BadRequestError", "NotFoundError", "InternalServerError",
})


def known_error_type(value: object) -> str:
    """`value` if it is a known upstream error type, else "" (the caller picks its generic type)."""
    return value if type(value) is str and value in KNOWN_ERROR_TYPES else ""
