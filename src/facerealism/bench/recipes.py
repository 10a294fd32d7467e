"""What a recipe choice costs per training step: the default's CycleGAN step beside variants, in one run.

    python -m facerealism.bench.recipes                       # the default vs no identity term vs the plain critic
    python -m facerealism.bench.recipes --variant "lp2=train.paired_lowpass_sigma=2"

Each variant is params.yaml with `--set`-style overrides; every recipe runs the same number of steps on the same
in-memory 64-px batches with the same thread count, so the ratios hold on any machine of this kind.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

DEFAULT_VARIANTS = {
    "no identity term": ["train.lambda_idt=0"],
    "plain critic": ["train.discriminator=patchgan"],
    "neither (the 2026-12-04 morning default)": ["train.lambda_idt=0", "train.discriminator=patchgan"],
}


def steps_per_s(overrides: list[str], steps: int, warmup: int, threads: int) -> float:
    """Optimiser steps per second of the CycleGAN trainer under params.yaml + overrides (batches already in memory)."""
    import torch

    from facerealism.config import load_config
    from facerealism.precision import resolve
    from facerealism.trainers import CycleGAN, make_accelerator

    torch.set_num_threads(threads)
    cfg = load_config("params.yaml", overrides)
    torch.manual_seed(0)
    side, batch = cfg.generate.size, cfg.train.batch_size
    a, b = torch.rand(batch, 3, side, side) * 2 - 1, torch.rand(batch, 3, side, side) * 2 - 1
    model = CycleGAN(cfg, make_accelerator(resolve(cfg.train.mixed_precision)))
    for _ in range(warmup):
        model.optimize_parameters(a, b)
    start = time.perf_counter()
    for _ in range(steps):
        model.optimize_parameters(a, b)
    return steps / (time.perf_counter() - start)


def main(variant: Annotated[list[str] | None, typer.Option(help="NAME=KEY=VALUE[,KEY=VALUE...]; repeatable")] = None,
         steps: Annotated[int, typer.Option(help="timed steps per recipe")] = 25,
         warmup: Annotated[int, typer.Option()] = 5,
         threads: Annotated[int, typer.Option(help="torch CPU threads")] = 1) -> None:
    """Print steps/s of the default recipe and each variant, and the default's time over each variant's."""
    from rich.console import Console
    from rich.table import Table

    variants = {"default (params.yaml)": []}
    if variant:
        for v in variant:
            name, _, sets = v.partition("=")
            if not sets:
                raise typer.BadParameter(f"{v!r}: expected NAME=KEY=VALUE[,KEY=VALUE...]")
            variants[name] = sets.split(",")
    else:
        variants.update(DEFAULT_VARIANTS)
    speed = {name: steps_per_s(o, steps, warmup, threads) for name, o in variants.items()}
    t = Table(title=f"training steps/s, {threads} thread(s), {steps} steps each, one run side by side")
    for col in ("recipe", "overrides", "steps/s", "default's step time / this one's"):
        t.add_column(col)
    base = speed["default (params.yaml)"]
    for name, o in variants.items():
        t.add_row(name, " ".join(o) or "-", f"{speed[name]:.2f}", f"{speed[name] / base:.2f}x")
    Console().print(t)


if __name__ == "__main__":
    typer.run(main)
