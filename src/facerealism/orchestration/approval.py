"""The flow's pause for a person: Prefect shows an approve/reject form with the gate's checks and the ratings."""

from __future__ import annotations

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

APPROVAL_TIMEOUT_S = 7 * 24 * 3600  # a person may answer days later; Prefect's default (1 h) would fail the run


class Approval(RunInput):
    """The form Prefect's UI renders on the paused run."""

    approve: bool = False
    reason: str = ""


def ask(description: str, timeout_s: int = APPROVAL_TIMEOUT_S) -> Approval:
    """Pause the running flow until someone answers the form (UI, `prefect flow-run resume`, or the API)."""
    return pause_flow_run(wait_for_input=Approval.with_initial_data(description=description), timeout=timeout_s)
