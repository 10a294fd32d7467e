"""Training-step benchmark: bf16 autocast vs fp32, and the share of step time spent waiting for data.

    python -m facerealism.train_bench [--size 128] [--batch-size 1] [--steps 5]

Runs the train stage's own CycleGAN step and batch sampler on in-memory images (the stage keeps
its dataset in memory too), so the numbers describe `facerealism stage train` on this machine.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer


def bench(size: int, batch_size: int, steps: int, warmup: int, ngf: int, n_blocks: int, images: int = 16) -> dict:
    """Seconds per step and data-wait fraction for fp32 and bf16.

    Returns:
        {"fp32": {...}, "bf16": {...}, "speedup": fp32 step time / bf16 step time}.
    """
    import torch

    from facerealism.config import Config
    from facerealism.stages.train import CycleGAN, Sampler, make_accelerator

    torch.manual_seed(0)
    A = torch.rand(images, 3, size, size) * 2 - 1  # (n, 3, size, size): content does not change the cost
    B = torch.rand(images, 3, size, size) * 2 - 1
    out = {}
    for precision in ("fp32", "bf16"):
        cfg = Config.model_validate({"generate": {"size": size}, "train": {
            "crop": size, "batch_size": batch_size, "ngf": ngf, "n_blocks": n_blocks, "steps": warmup + steps,
            "mixed_precision": precision}})
        acc = make_accelerator(precision)
        model, sampler = CycleGAN(cfg, acc), Sampler(A, B, cfg, acc.device, 0)
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
        out[precision] = {"step_s": total / steps, "data_wait_fraction": data / total}
    out["speedup"] = out["fp32"]["step_s"] / out["bf16"]["step_s"]
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
    for col in ("", "fp32", "bf16", "target"):
        t.add_column(col)
    t.add_row("s / step", f"{r['fp32']['step_s']:.3f}", f"{r['bf16']['step_s']:.3f}", "")
    t.add_row("speedup vs fp32", "1.00x", f"{r['speedup']:.2f}x", ">= 1.8x")
    t.add_row("waiting for data", f"{r['fp32']['data_wait_fraction']:.2%}", f"{r['bf16']['data_wait_fraction']:.2%}",
              "<= 10%")
    Console().print(t)


if __name__ == "__main__":
    typer.run(main)
