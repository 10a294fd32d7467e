"""How Prefect retries a failed task: the backoff delays and the retry condition (errors.is_transient decides)."""

from __future__ import annotations

import os

from facerealism.errors import UserError, is_transient

DELAYS_ENV = "FACEREALISM_RETRY_DELAYS_S"


def _delays() -> list[float]:
    """Backoff between task retries, seconds: a restarting server gets ~1 min before the run gives up.
    FACEREALISM_RETRY_DELAYS_S=2,10,30 sets them (and so the number of retries)."""
    raw = os.environ.get(DELAYS_ENV)
    if raw is None:
        return [2, 10, 30]
    try:
        delays = [float(x) for x in raw.split(",")]
    except ValueError:
        delays = []
    if not delays or any(d < 0 for d in delays):
        raise UserError(f"{DELAYS_ENV}={raw!r}: expected comma-separated seconds >= 0, e.g. 2,10,30")
    return delays


RETRY_DELAYS_S = _delays()
RETRIES = len(RETRY_DELAYS_S)


def retry_transient(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry a failed task run only when its exception is transient."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - the state's own exception, re-raised to be classified
        return is_transient(exc)
    return False
