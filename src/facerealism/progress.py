"""Progress of long stages: rich bars (items/s, ETA) on a terminal, log lines (done/total, rate, ETA) without one."""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.errors import LiveError
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second (rich only ships a bytes/s column)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f}/s" if speed else "-/s", style="cyan")


def progress(transient: bool = False) -> Progress:
    """A progress bar on a terminal; without one (a Prefect worker, a log file) a line every ~30 s."""
    return StageProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        transient=transient,
    )


class RateLog:
    """Progress as log lines ("label: 120/500 pairs, 2.10 pairs/s, eta 0:03:01") for workers without a terminal,
    e.g. Dask tasks whose logs people read in Prefect's UI: at most one line per `every_s`, and one at the end."""

    def __init__(self, total: int, label: str, emit, unit: str = "pairs", every_s: float = 30.0):
        self.total, self.label, self.emit, self.unit, self.every_s = total, label, emit, unit, every_s
        self.done = 0
        self.start = self.last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = datetime.timedelta(seconds=round((self.total - self.done) / rate))
            self.emit(f"{self.label}: {self.done}/{self.total} {self.unit}, {rate:.2f} {self.unit}/s, eta {eta}")


def log_line(line: str) -> None:
    """One progress line to the Prefect run log inside a flow/task run, else to the `facerealism.progress` logger
    (and stderr when nothing handles that logger)."""
    if "prefect" in sys.modules:  # no Prefect imported: no run to log to (and no 1 s import to pay)
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        try:
            get_run_logger().info(line)
            return
        except MissingContextError:
            pass
    logger = logging.getLogger("facerealism.progress")
    if logger.hasHandlers():
        logger.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


def log_every_s() -> float:
    """Seconds between progress lines without a terminal (FACEREALISM_PROGRESS_EVERY_S, default 30)."""
    return float(os.environ.get("FACEREALISM_PROGRESS_EVERY_S", "30"))


class StageProgress(Progress):
    """A rich Progress that, without a terminal (or while another live bar holds it), logs RateLog lines instead.

    Stages use it exactly like rich's Progress (`add_task`, `advance`, `update`); a stage in a Prefect task
    running in a thread next to another stage gets log lines, since rich allows one live display at a time.
    """

    def __init__(self, *columns, emit=None, **kwargs):
        super().__init__(*columns, **kwargs)
        self.log_mode = not self.console.is_terminal
        self._emit = emit or log_line
        self._rates: dict = {}

    def start(self) -> None:
        # Rich 15 stacks nested live displays, but pops them in LIFO order: bars of two threads (audit ∥ train)
        # that end out of order would corrupt it, so a bar started while another is live logs instead.
        if self.log_mode or getattr(self.console, "_live_stack", None):
            self.log_mode = True
            return
        try:
            super().start()
        except LiveError:
            self.log_mode = True

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields):
        task_id = super().add_task(description, start=start, total=total, completed=completed, visible=visible,
                                   **fields)
        self._rates[task_id] = RateLog(int(total or 0), description, self._emit, unit="items", every_s=log_every_s())
        return task_id

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id, advance)

    def update(self, task_id, *, total=None, completed=None, advance=None, description=None, visible=None,
               refresh=False, **fields) -> None:
        before = self._tasks[task_id].completed
        super().update(task_id, total=total, completed=completed, advance=advance, description=description,
                       visible=visible, refresh=refresh, **fields)
        rate = self._rates.get(task_id)
        if rate is not None and total is not None:
            rate.total = int(total)
        self._log(task_id, self._tasks[task_id].completed - before)

    def _log(self, task_id, n: float) -> None:
        rate = self._rates.get(task_id)
        if self.log_mode and rate is not None and n:
            rate.advance(int(n))
