"""Which precision this machine computes fast: bf16 only where the hardware has it, fp32 everywhere else."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Literal

import torch

from facerealism.errors import UserError

# Forces the detection (tests drive both branches with it; also for a machine the check misjudges).
FORCE_ENV = "FACEREALISM_BF16"
# Measured on AMD EPYCs with AVX2 and no AVX-512 BF16/AMX: 8 stacked 3x3 convolutions, batch 2, 32 channels, 64 px,
# forward + backward: fp32 0.042 s, bf16 autocast 1.24 s on a Zen 3 (2026-12-06); fp32 0.030 s, bf16 2.19 s on a
# Zen 2 (2026-12-07). PyTorch's AMP docs give the same advice (pytorch/pytorch#118499, #86270). The default
# `make run` trained at 0.07 steps/s on the Zen 3 in bf16.
EMULATED_COST = "29-73x slower than fp32 per training step (measured on AMD EPYC Zen 3 and Zen 2, which emulate bf16)"
# x86 CPU flags of bf16 arithmetic in hardware (Linux /proc/cpuinfo names).
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Precision:
    """The precision a run uses and why; `label` is what the log, MLflow and the model card show."""

    name: Literal["bf16", "fp32"]
    requested: str
    native_bf16: bool
    why: str  # the detection's evidence, one line

    @property
    def label(self) -> str:
        if self.requested == "auto":
            return "bf16 (native)" if self.name == "bf16" else "fp32 (no native bf16)"
        if self.name == "bf16" and not self.native_bf16:
            return "bf16 (set; emulated here)"
        return f"{self.name} (set)"

    @property
    def accelerate(self) -> str:
        """accelerate's mixed_precision value."""
        return "bf16" if self.name == "bf16" else "no"

    def as_params(self, prefix: str) -> dict[str, str]:
        """MLflow params / head.json facts: the precision used, what was asked and the detection's evidence."""
        return {f"{prefix}precision": self.label, f"{prefix}precision_detection": self.why}


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


def bf16_support(device: str) -> tuple[bool, str]:
    """Whether `device` ("cpu" or "cuda") computes bf16 in hardware, and the evidence in one line.

    CUDA: torch.cuda.is_bf16_supported (Ampere and later). CPU: oneDNN must report bf16 kernels (it does not when
    ONEDNN_MAX_CPU_ISA caps the ISA below them) *and*, on x86, the CPU must have AVX-512 BF16 or AMX: oneDNN also
    says yes on plain AVX-512, where bf16 is converted in software.
    """
    forced = os.environ.get(FORCE_ENV, "").strip().lower()
    if forced:
        if forced not in ("native", "emulated"):
            raise UserError(f"{FORCE_ENV}={forced!r}: use 'native' or 'emulated' (or unset it to detect)")
        return forced == "native", f"forced by {FORCE_ENV}={forced}"
    if device == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        return ok, f"torch.cuda.is_bf16_supported() is {ok}"
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    if not onednn:
        return False, f"oneDNN has no bf16 kernels on this {platform.machine()} CPU"
    if platform.machine().lower() in ("x86_64", "amd64", "i686"):
        flags = _cpu_flags()
        if flags is None:
            return False, "CPU flags unreadable; assuming bf16 is emulated"
        has = [f for f in X86_BF16_FLAGS if f in flags]
        if not has:
            return False, "CPU has neither avx512_bf16 nor amx_bf16"
        return True, f"CPU has {' and '.join(has)}"
    return True, f"oneDNN reports bf16 kernels on this {platform.machine()} CPU"


def resolve(requested: str, device: str | None = None) -> Precision:
    """The precision to run in: "auto" picks bf16 where it is native and fp32 elsewhere; "bf16"/"fp32" are kept.

    Args:
        requested: "auto", "bf16" or "fp32" (train.mixed_precision and the like).
        device: "cpu" or "cuda"; None: the GPU when there is one.
    """
    if requested not in ("auto", "bf16", "fp32"):
        raise UserError(f"precision {requested!r}: use auto, bf16 or fp32")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    native, why = bf16_support(device)
    name = ("bf16" if native else "fp32") if requested == "auto" else requested
    return Precision(name=name, requested=requested, native_bf16=native, why=why)


def pipeline_dtype(requested: str, device: str) -> str:
    """A pipeline's torch dtype name: "auto" is bfloat16 where the device computes it natively, else float32."""
    if requested != "auto":
        return requested
    return "bfloat16" if bf16_support(device)[0] else "float32"
