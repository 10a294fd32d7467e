"""Peak memory of train and evaluate at N and 8N pairs: neither may grow with the data (issue #35).

    python -m facerealism.bench.memory [--pairs 400] [--factor 8] [--size 64] [--steps 20] [--max-ratio 1.3]

Builds two projects in a temporary folder with the offline default's own stages (prompts, generate, validate),
of N and factor x N pairs, then runs train and evaluate on each in a fresh Python process and reads that process's
peak resident memory (VmHWM). Prints stage, N, 8N and their ratio; exits 1 when a ratio exceeds --max-ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

STAGES = ("train", "evaluate")  # the stages that read every pair (prompts, generate, validate stream by design)


def project_overrides(root: Path, pairs: int, size: int, steps: int) -> list[str]:
    """params.yaml overrides of a project under `root` with `pairs` offline pairs of `size` px, trained `steps` steps."""
    return [f"paths.data={root}/data", f"paths.models={root}/models", f"paths.reports={root}/reports",
            f"paths.mlflow_uri=sqlite:///{root}/mlflow.db", f"paths.mlflow_artifacts={root}/mlartifacts",
            f"prompts.n_enriched={pairs}", "prompts.n_baseline=0", f"generate.size={size}",
            f"train.steps={steps}", "train.baselines=[]", f"train.checkpoint_every={steps + 1}"]


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM: since exec, unlike getrusage after a vfork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (not Linux?)")


def _child() -> None:
    """In the fresh process: argv = (json out, stage, params.yaml, *overrides); runs the stage, writes its peak."""
    from facerealism.config import load_config
    from facerealism.stages import run_stage

    out, stage, params, *overrides = sys.argv[1:]
    run_stage(stage, load_config(Path(params), overrides))
    Path(out).write_text(json.dumps({"stage": stage, "peak_rss_bytes": peak_rss()}))


def stage_peak(stage: str, params: Path, overrides: list[str], cwd: Path) -> int:
    """Peak RSS in bytes of `stage` run alone in a fresh Python process (its output goes to cwd/STAGE.log).

    Raises:
        RuntimeError: the stage failed; the message holds the end of its log.
    """
    out, log = cwd / f"{stage}.peak.json", cwd / f"{stage}.log"
    with log.open("w") as f:
        done = subprocess.run([sys.executable, "-c", "from facerealism.bench.memory import _child; _child()",
                               str(out), stage, str(params), *overrides], cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode:
        raise RuntimeError(f"stage {stage} exited {done.returncode}:\n{log.read_text()[-3000:]}")
    return json.loads(out.read_text())["peak_rss_bytes"]


def build_project(root: Path, params: Path, overrides: list[str]) -> int:
    """prompts, generate and validate in this process (not measured); returns the validated pairs."""
    from facerealism.config import load_config
    from facerealism.data.split import validated_manifest
    from facerealism.stages import run_stage

    cfg = load_config(params, overrides)
    for stage in ("prompts", "generate", "validate"):
        run_stage(stage, cfg)
    return len(validated_manifest(cfg.paths.data))


def measure(pairs: int, factor: int, size: int, steps: int, params: Path, workdir: Path,
            extra: tuple[str, ...] = ()) -> dict:
    """Peak RSS of each of STAGES on a project of `pairs` pairs and one of factor x `pairs`.

    Args:
        params: the params.yaml both projects start from; extra: further overrides (e.g. a tiny head for tests).
        workdir: where the two projects are built (kept: logs and reports of every run).
    Returns:
        {"pairs": [N, factor N], "validated": [pairs that passed validate, each], "size", "steps",
        "stages": {stage: {"peak_bytes": [at N, at factor N], "ratio": large / small}}}.
    """
    sizes = [pairs, factor * pairs]
    validated, peaks = [], {stage: [] for stage in STAGES}
    for n in sizes:
        root = (workdir / f"pairs{n}").resolve()
        root.mkdir(parents=True, exist_ok=True)
        overrides = project_overrides(root, n, size, steps) + list(extra)
        validated.append(build_project(root, params, overrides))
        for stage in STAGES:
            peaks[stage].append(stage_peak(stage, params.resolve(), overrides, root))
    return {"pairs": sizes, "validated": validated, "size": size, "steps": steps,
            "stages": {stage: {"peak_bytes": p, "ratio": p[1] / p[0]} for stage, p in peaks.items()}}


def main(pairs: Annotated[int, typer.Option(help="N: pairs of the smaller project")] = 400,
         factor: Annotated[int, typer.Option(help="the larger project holds factor x N pairs")] = 8,
         size: Annotated[int, typer.Option(help="image side in pixels (generate.size)")] = 64,
         steps: Annotated[int, typer.Option(help="training steps (train.steps)")] = 20,
         max_ratio: Annotated[float, typer.Option(help="exit 1 when a stage's peak grows more than this")] = 1.3,
         params: Annotated[Path, typer.Option(help="the params.yaml both projects start from")] = Path("params.yaml"),
         workdir: Annotated[Path | None, typer.Option(help="keep the projects here (default: a temporary folder)")]
         = None) -> None:
    """Print the peak RSS of train and evaluate at N and factor x N pairs side by side, and their ratio."""
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory(prefix="facerealism-bench-memory-") as tmp:
        r = measure(pairs, factor, size, steps, params, workdir or Path(tmp))
    n, big = r["pairs"]
    t = Table(title=f"peak RSS (MB) of a fresh process per stage, {size} px, train.steps {steps}; "
                    f"validated pairs {r['validated'][0]} and {r['validated'][1]}")
    for col in ("stage", f"N = {n} pairs", f"{factor}N = {big} pairs", "ratio", "target"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for stage, s in r["stages"].items():
        t.add_row(stage, *(f"{b / 1e6:,.0f}" for b in s["peak_bytes"]), f"{s['ratio']:.2f}", f"<= {max_ratio:g}")
    Console().print(t)
    over = [stage for stage, s in r["stages"].items() if s["ratio"] > max_ratio]
    if over:
        Console(stderr=True).print(f"peak memory grows with the data: {', '.join(over)} over {max_ratio:g}x")
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
