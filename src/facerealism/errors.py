"""The project's own error type: bad input or config a user can fix, which the CLI prints as one line."""


class UserError(ValueError):
    """A deliberate, actionable message about the input (a ValueError, so callers that catch those still do).

    The CLI turns it into `error: <message>` and exit code 1; any other exception is a bug and keeps its traceback.
    """


class RemoteUnavailable(UserError, ConnectionError):
    """A DVC remote that could not be reached or answered 5xx: one line for the CLI, transient for the retry policy
    (faults.is_transient), so Prefect retries it with backoff before the run fails."""
