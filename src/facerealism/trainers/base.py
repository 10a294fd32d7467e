"""What every head trainer shares: named nets/optimisers/schedulers/pools, their full state, the LR schedule."""

from __future__ import annotations

import random

import numpy as np
import torch

from facerealism.head import enhance_array
from facerealism.precision import Precision
import facerealism.trainers.checkpoint as checkpoint  # not `from facerealism.trainers import`: see stages/__init__.py


def linear_decay(t) -> callable:
    decay_from = int(t.steps * t.decay_start)
    # Constant, then linear decay to zero: the reference CycleGAN schedule, counted in steps.
    return lambda step: 1.0 - max(0, step - decay_from) / max(1, t.steps - decay_from)


class Trainer:
    """What every head trainer shares: named nets/optimisers/schedulers/pools and their full state."""

    nets: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict
    pools: dict  # name -> trainers.cyclegan.ImagePool
    pool_rng: random.Random | None = None
    loss_names: list[str]
    head_name: str
    has_discriminators: bool = False
    """Whether train.ndf shapes its tensors (checked on resume)."""

    def plain(self, net: torch.nn.Module) -> torch.nn.Module:
        """The module itself: without accelerate's DDP and torch.compile wrappers (state-dict keys as built)."""
        return self.acc.unwrap_model(net, keep_torch_compile=False)

    def head(self) -> torch.nn.Module:
        """The shipped generator (schnell -> dev), unwrapped, fp32, on the CPU."""
        return self.plain(self.nets[self.head_name]).float().cpu().to(memory_format=torch.contiguous_format)

    def preview(self, images: np.ndarray) -> np.ndarray:
        """The head's current output on uint8 images, leaving the training state as it was."""
        G = self.plain(self.nets[self.head_name])
        out = enhance_array(G, images, device=self.acc.device)
        G.train()
        return out

    def step_schedulers(self) -> None:
        """Once per optimiser step: the schedule counts steps, not accumulated micro-batches."""
        if self.acc.sync_gradients:
            for sched in self.schedulers.values():
                sched.step()

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors, meta = {}, {"optimizers": {}, "schedulers": {}, "pools": {}}
        for name, net in self.nets.items():
            for k, v in self.plain(net).state_dict().items():
                tensors[f"net.{name}.{k}"] = v
        for name, opt in self.optimizers.items():
            opt_t, meta["optimizers"][name] = checkpoint.flatten_optimizer(f"opt.{name}", opt.state_dict())
            tensors.update(opt_t)
        for name, sched in self.schedulers.items():
            meta["schedulers"][name] = sched.state_dict()
        for name, pool in self.pools.items():
            meta["pools"][name] = len(pool.images)
            if pool.images:
                tensors[f"pool.{name}"] = torch.cat(pool.images)  # (n, 3, crop, crop)
        if self.pool_rng is not None:
            meta["pool_rng"] = checkpoint.py_rng_state(self.pool_rng)
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        for name, net in self.nets.items():
            prefix = f"net.{name}."
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            self.plain(net).load_state_dict(own, strict=True)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(checkpoint.unflatten_optimizer(f"opt.{name}", tensors, meta["optimizers"][name]))
        for name, sched in self.schedulers.items():
            sched.load_state_dict(meta["schedulers"][name])
        for name, pool in self.pools.items():
            n = meta["pools"][name]
            pool.images = list(tensors[f"pool.{name}"].to(self.acc.device).split(1)) if n else []
        if self.pool_rng is not None:
            checkpoint.set_py_rng_state(self.pool_rng, meta["pool_rng"])

    def params(self) -> dict:
        """Trainer-specific facts recorded in MLflow, the summary and head.json (none by default)."""
        return {}

    def preview_targets(self, held) -> list[tuple[np.ndarray, str]]:
        """Extra (images, label) rows of the final sample grid, from the held-out rows (none by default)."""
        return []

    def final_metrics(self, held, cycle_tail: list[float]) -> dict:
        """Metrics of the trained nets on held-out rows, logged as train.<name> (none by default)."""
        return {}


def make_accelerator(precision: Precision, grad_accum: int = 1, compile_backend: str | None = None):
    """accelerate owns device placement, precision, gradient accumulation and torch.compile.

    Args:
        precision: facerealism.precision.resolve(train.mixed_precision): "auto" is decided before this point, so
            the log and the model card say what ran.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps a process-wide state; a second training in one process (tests, benchmarks)
    # with another precision must start from a clean one.
    AcceleratorState._reset_state(reset_partial_state=True)
    # step_scheduler_with_optimizer=False: accelerate would otherwise step the schedule once per
    # process per step, decaying num_processes times too fast for our per-step schedule.
    return Accelerator(mixed_precision=precision.accelerate,
                       gradient_accumulation_steps=grad_accum, dynamo_backend=compile_backend,
                       cpu=not torch.cuda.is_available(), step_scheduler_with_optimizer=False)

