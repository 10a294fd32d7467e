"""Wall time of evaluate's shards (features and per-pair measures): in this process, on a local Dask cluster of 1 worker and of 2, one run.

    python -m facerealism.bench.evaluate_scale [--pairs 2000] [--size 64] [--holdout 0.5] [--workers 2] [--repeats 3]

Builds an offline project of --pairs pairs in a temporary folder (prompts, generate, validate: not measured), then
times scored_half, the step of evaluate that reads every image of every row (schnell, the dev check sample, the
reference dev images, each negative control and the oracle; heads and fitted baselines are left out: they need a
trained head and a fit), on the scored test half, with every measure of Table 4 (features, placement, halo and
the optional columns that can run here): in this process (evaluate.workers 1, the default), on a
LocalCluster of 1 worker and on one of --workers, each started and warmed up (imports) before its clock starts.
The three run in turn --repeats times and the fastest of each is compared (on a shared machine other jobs slow some
runs; the CPU seconds of all the processes show the work itself did not grow). Prints the times, the speed-ups and whether all three gave the same bits; the load average before and after
says what else the machine was doing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer


def _warm() -> int:
    """Run on each worker before timing: the imports a first shard would otherwise pay."""
    import facerealism.scoring.rows  # noqa: F401  (torch, scipy, the feature spaces)

    return os.getpid()


def _cpu_s() -> float:
    """CPU seconds this process has used (user + system)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_all(client) -> float:
    """CPU seconds of this process and, with a client, of each of its workers."""
    return _cpu_s() + (sum(client.run(_cpu_s).values()) if client is not None else 0.0)


def measure(root: Path, pairs: int, size: int, holdout: float, workers: int, params: Path, repeats: int) -> dict:
    """{"pairs", "test_images", "rows", "seconds", "cpu_s" and "start_s": {layout: [s per repeat]},
    "identical"}."""
    import numpy as np

    from facerealism import cluster
    from facerealism.bench.memory import build_project, project_overrides
    from facerealism.config import load_config
    from facerealism.scoring.rows import scored_half
    from facerealism.scoring.table4 import COLUMNS, Context
    from facerealism.stages.evaluate import control_rows, holdout_files

    overrides = project_overrides(root, pairs, size, 1) + [f"split.holdout_fraction={holdout}",
                                                          "split.validation_fraction=0.0"]
    params = params.resolve()
    build_project(root, params, overrides)
    files = holdout_files(load_config(params, overrides))
    n = len(files["schnell"])
    cfg = load_config(params, overrides)
    controls = control_rows(cfg, files["schnell"], files["dev"])
    rows = 3 + len(controls)  # schnell, the dev check sample, the reference dev images and the controls
    layouts = {"in process": 0, "cluster, 1 worker": 1, f"cluster, {workers} workers": workers}
    seconds: dict[str, list[float]] = {layout: [] for layout in layouts}
    cpu_s: dict[str, list[float]] = {layout: [] for layout in layouts}  # of the driver and the workers together
    start, feats = {}, {}
    start: dict[str, list[float]] = {layout: [] for layout in layouts}
    feats = {}
    for _ in range(repeats):  # the layouts in turn, so a burst of other load falls on each alike
        for layout, count in layouts.items():
            t = time.perf_counter()
            # one cluster at a time, started and warmed up (imports) before the clock: what evaluate.workers N starts
            with cluster.local_client(count) if count else contextlib.nullcontext() as client:
                if client is not None:
                    assert len(set(client.run(_warm).values())) == count
                start[layout].append(time.perf_counter() - t)
                cpu, t = _cpu_all(client), time.perf_counter()
                with tempfile.TemporaryDirectory() as scratch:
                    ctx = Context(cfg, (size, size), Path(scratch))
                    prepared = {col.key: col.prepare(ctx) for col in COLUMNS}
                    feats[layout] = scored_half(cfg, ctx, files["schnell"], files["dev"], files["dev_check"], controls,
                                                files["schnell_check"], prepared, client)
                seconds[layout].append(time.perf_counter() - t)
                cpu_s[layout].append(_cpu_all(client) - cpu)
    first = next(iter(feats.values()))
    identical = all(np.array_equal(f[label][name], first[label][name], equal_nan=True)  # NaN: no face in a pair
                    for f in feats.values() for label in first for name in first[label])
    return {"pairs": pairs, "test_images": n, "rows": rows, "seconds": seconds, "cpu_s": cpu_s, "start_s": start,
            "identical": identical}


def main(pairs: Annotated[int, typer.Option(help="pairs of the offline project")] = 2000,
         size: Annotated[int, typer.Option(help="image side in pixels (generate.size)")] = 64,
         holdout: Annotated[float, typer.Option(help="split.holdout_fraction: the test split's share")] = 0.5,
         workers: Annotated[int, typer.Option(help="worker processes of the larger cluster")] = 2,
         repeats: Annotated[int, typer.Option(help="timed runs of each layout, in turn; the fastest is reported")] = 3,
         params: Annotated[Path, typer.Option(help="the params.yaml the project starts from")] = Path("params.yaml"),
         ) -> None:
    """Print the feature-extraction wall time in process, with 1 worker and with `workers`, and the speed-ups."""
    # One thread per process: 1 worker x 1 thread against N x 1 thread is the comparison, not thread counts.
    os.environ["OMP_NUM_THREADS"] = "1"
    from rich.console import Console
    from rich.table import Table

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="facerealism-bench-evaluate-") as tmp:
        r = measure(Path(tmp), pairs, size, holdout, workers, params, repeats)
    load_after = os.getloadavg()
    s = {layout: min(runs) for layout, runs in r["seconds"].items()}  # the least disturbed run of each
    one, many = s["cluster, 1 worker"], s[f"cluster, {workers} workers"]
    t = Table(title=f"evaluate's shards (scored_half): {r['test_images']} test images x {r['rows']} "
                    f"rows, {size} px; {os.cpu_count()} CPU cores; load average {load_before[0]:.1f} before, "
                    f"{load_after[0]:.1f} after; same bits in all three: {'yes' if r['identical'] else 'NO'}")
    for col in ("layout", "cluster start + warm-up (s)", "features (s), fastest", "all runs (s)", "CPU s, all runs",
                "images/s", "speed-up vs 1 worker"):
        t.add_column(col, justify="left" if col == "layout" else "right")
    for layout, sec in s.items():
        t.add_row(layout, f"{max(r['start_s'][layout]):.1f}", f"{sec:.1f}",
                  " ".join(f"{x:.1f}" for x in r["seconds"][layout]), " ".join(f"{x:.1f}" for x in r["cpu_s"][layout]),
                  f"{r['test_images'] * r['rows'] / sec:.0f}",
                  f"{one / sec:.2f}x")
    Console().print(t)
    Console().print(f"ratio {workers} workers / 1 worker (features wall time): {many / one:.2f}")
    if not r["identical"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
