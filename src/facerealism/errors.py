"""Every error type the project raises, and which failures a retry can fix: one place for the CLI and the retry policy.

UserError (and its kinds) is bad input or config a user can fix, which the CLI prints as one line; `is_transient`
decides which failures Prefect retries with backoff (orchestration/retry.py holds the delays and the Prefect hook).
"""

from __future__ import annotations

import http.client
import socket
import urllib.error


class UserError(ValueError):
    """A deliberate, actionable message about the input (a ValueError, so callers that catch those still do).

    The CLI turns it into `error: <message>` and exit code 1; any other exception is a bug and keeps its traceback.
    """


class RemoteUnavailable(UserError, ConnectionError):
    """A DVC remote that could not be reached or answered 5xx: one line for the CLI, transient for the retry policy
    (is_transient), so Prefect retries it with backoff before the run fails."""


class ConfigError(UserError):
    """A params file or override that cannot be used; the message names the offending key."""


class ValidationFailed(RuntimeError):
    """The failed fraction exceeded validate.max_failed_fraction, or a table-level expectation (schema, or the
    median of a dev-vs-schnell measure) failed."""


# Words of a transient server/network failure in an error message (MLflow wraps its HTTP errors in MlflowException,
# DVC its remote errors in DvcException, so the type alone does not tell).
_TRANSIENT_WORDS = (
    "connection refused", "connection reset", "connection aborted", "remotedisconnected", "read timed out",
    "timed out", "timeout", "max retries exceeded", "temporarily unavailable", "service unavailable",
    "bad gateway", "gateway timeout", "too many 500 error responses", "too many 502 error responses",
    "too many 503 error responses", "too many 504 error responses", "internal server error",
    "database is locked", "brokenpipe", "broken pipe", "cannot connect to host", "connect call failed",
)
# Not INTERNAL_ERROR: MLflow gives it to any exception raised without a code (bad input included).
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def _never_retried() -> tuple[type, ...]:
    """Errors a retry cannot fix: a bad config or input, a failed validation gate, a bug."""
    return (ConfigError, ValidationFailed, FileNotFoundError, PermissionError, KeyError, TypeError,
            AttributeError, NotImplementedError)


def _status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (requests, httpx, urllib), if any."""
    for owner in (getattr(exc, "response", None), exc):
        code = getattr(owner, "status_code", None) or getattr(owner, "status", None) or getattr(owner, "code", None)
        if isinstance(code, int):
            return code
    return None


def is_transient(exc: BaseException) -> bool:
    """True for a network or server hiccup (connection refused/reset, timeout, HTTP 5xx/429) anywhere in the chain.

    A ValueError or ConfigError (bad config, bad input) and a failed validation gate are never transient, even
    when their message mentions a timeout.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _never_retried()):
            return False
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, http.client.RemoteDisconnected,
                            http.client.IncompleteRead, urllib.error.URLError)):
            return True
        if _status(exc) in _TRANSIENT_STATUS:
            return True
        if getattr(exc, "error_code", None) in _TRANSIENT_CODES:
            return True
        mod = type(exc).__module__.split(".")[0]
        if mod in ("requests", "urllib3", "httpx", "httpcore", "mlflow", "dvc", "prefect", "dvc_objects", "fsspec"):
            if transient_text(f"{type(exc).__name__} {exc}"):
                return True
        if isinstance(exc, ValueError):
            return False  # our own "bad input" errors; checked after the chain's network causes above
        exc = exc.__cause__ or exc.__context__
    return False


def transient_text(text: str) -> bool:
    """True when a tool's error output (e.g. `dvc push` to a remote) describes a network or server hiccup."""
    return any(w in text.lower() for w in _TRANSIENT_WORDS)
