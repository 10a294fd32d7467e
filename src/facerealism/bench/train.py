"""Training-step benchmark: bf16 autocast vs fp32 (and channels-last), and the share of step time waiting for data.

    python -m facerealism.bench.train [--size 128] [--batch-size 1] [--steps 5]

Runs the train stage's own CycleGAN step and batch sampler on PNG files in a temporary folder (the sampler
decodes each batch from disk, as the stage does), so the numbers describe `facerealism stage train` on this machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16 channels_last": ("bf16", True)}


def noise_pairs(folder: Path, images: int, size: int):
    """`images` (schnell, dev) pairs of uniform noise saved as PNG files under `folder`: the manifest rows a sampler
    reads (content does not change the cost of a step)."""
    import numpy as np
    import pandas as pd

    from facerealism.files import save_png

    rng = np.random.default_rng(0)
    rows = pd.DataFrame({f"{side}_path": [str(folder / f"{side}{i}.png") for i in range(images)]
                         for side in ("schnell", "dev")})
    for path in (*rows["schnell_path"], *rows["dev_path"]):
        save_png(path, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return rows


def bench(size: int, batch_size: int, steps: int, warmup: int, ngf: int, n_blocks: int, images: int = 16,
          variants: list[str] | None = None) -> dict:
    """Seconds per step and data-wait fraction per variant (train.mixed_precision, train.channels_last).

    Args:
        variants: names of VARIANTS to time (None: all; "fp32" is always timed, every ratio is against it).

    Returns:
        {variant: {"step_s", "data_wait_fraction", "speedup"}}, speedup = fp32 step time / this step time.
    """
    import tempfile

    import torch

    from facerealism.config import Config
    from facerealism.trainers.samplers import Sampler
    from facerealism.precision import resolve
    from facerealism.trainers import CycleGAN, make_accelerator

    torch.manual_seed(0)
    out = {}
    with tempfile.TemporaryDirectory(prefix="facerealism-bench-train-") as folder:
        rows = noise_pairs(Path(folder), images, size)
        for name, (precision, channels_last) in VARIANTS.items():
            if variants is not None and name != "fp32" and name not in variants:
                continue
            cfg = Config.model_validate({"generate": {"size": size}, "train": {
                "crop": size, "batch_size": batch_size, "ngf": ngf, "n_blocks": n_blocks, "steps": warmup + steps,
                "mixed_precision": precision, "channels_last": channels_last}})
            acc = make_accelerator(resolve(precision))  # explicit: this benchmark measures bf16 itself, emulated or not
            model, sampler = CycleGAN(cfg, acc), Sampler(rows, cfg, acc.device, 0)
            data = compute = 0.0
            for i in range(warmup + steps):
                t0 = time.perf_counter()
                real_A, real_B = sampler.next()
                t1 = time.perf_counter()
                model.optimize_parameters(real_A, real_B)
                t2 = time.perf_counter()
                if i >= warmup:
                    data, compute = data + t1 - t0, compute + t2 - t1
            total = data + compute
            out[name] = {"step_s": total / steps, "data_wait_fraction": data / total}
    for r in out.values():
        r["speedup"] = out["fp32"]["step_s"] / r["step_s"]
    return out


def main(size: Annotated[int, typer.Option(help="crop side in pixels")] = 128,
         batch_size: Annotated[int, typer.Option()] = 1,
         steps: Annotated[int, typer.Option(help="timed steps per precision")] = 5,
         warmup: Annotated[int, typer.Option()] = 2,
         ngf: Annotated[int, typer.Option(help="generator width (params.yaml default)")] = 32,
         n_blocks: Annotated[int, typer.Option()] = 4) -> None:
    """Print fp32 and bf16 step times side by side, the speedup and the data-wait fraction."""
    import torch
    from rich.console import Console
    from rich.table import Table

    r = bench(size, batch_size, steps, warmup, ngf, n_blocks)
    t = Table(title=f"train step, CycleGAN ngf={ngf} blocks={n_blocks}, {size}x{size}, batch {batch_size}, "
                    f"{torch.get_num_threads()} thread(s), {'cuda' if torch.cuda.is_available() else 'cpu'}")
    for col in ("", *r, "target"):
        t.add_column(col)
    t.add_row("s / step", *(f"{v['step_s']:.3f}" for v in r.values()), "")
    t.add_row("speedup vs fp32", *(f"{v['speedup']:.2f}x" for v in r.values()), "bf16 >= 1.8x")
    t.add_row("waiting for data", *(f"{v['data_wait_fraction']:.2%}" for v in r.values()), "<= 10%")
    Console().print(t)


if __name__ == "__main__":
    typer.run(main)
