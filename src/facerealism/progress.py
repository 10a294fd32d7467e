"""Rich progress bars showing items/s and ETA, used by every stage that takes more than a few seconds."""

from __future__ import annotations

import datetime
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
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second (rich only ships a bytes/s column)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f}/s" if speed else "-/s", style="cyan")


def progress(transient: bool = False) -> Progress:
    return Progress(
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
