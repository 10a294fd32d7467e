"""Full training state on disk: atomic, self-describing checkpoints (safetensors + JSON) for exact resume."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from facerealism.errors import UserError
from facerealism.files import sha256_file

TENSORS, META = "state.safetensors", "state.json"
PREFIX = "step-"
FORMAT = 1


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """The process-wide RNG states: torch's as tensors, Python's and NumPy's legacy one as JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    meta = {"python": _py_state(random.getstate()),
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(_py_unstate(meta["python"]))
    name, keys, *rest = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))


def _py_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_unstate(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def py_rng_state(rng: random.Random) -> list:
    """A random.Random's state as JSON-able data."""
    return _py_state(rng.getstate())


def set_py_rng_state(rng: random.Random, state: list) -> None:
    rng.setstate(_py_unstate(state))


def flatten_optimizer(name: str, state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state_dict split into safetensors-able tensors and JSON (param groups, scalars)."""
    tensors, scalars = {}, {}
    for pid, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{name}.state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(name: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"{name}.state."
    for key, value in tensors.items():
        if key.startswith(prefix):
            pid, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(pid), {})[field] = value
    for key, value in meta["scalars"].items():
        pid, field = key.split(".", 1)
        state.setdefault(int(pid), {})[field] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def list_checkpoints(root: str | Path) -> list[Path]:
    """Finished checkpoints under root, oldest first (unfinished ones are hidden temp folders)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def save(root: str | Path, step: int, tensors: dict[str, torch.Tensor], meta: dict, keep: int = 2) -> Path:
    """Write a checkpoint atomically: a temp folder, fsynced, then renamed to step-NNNNNNNN.

    A crash at any point leaves the previous checkpoints untouched. Older checkpoints of the
    same training (same meta["run_token"]) beyond `keep`, and all of other trainings, are
    removed only after the new one is in place.

    Returns:
        The checkpoint folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a process killed mid-write; one trainer owns this folder
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{step:08d}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / TENSORS))
        # The digest makes a truncated or bit-flipped tensor file detectable before it is used.
        doc = {"format": FORMAT, "step": step, "sha256": sha256_file(tmp / TENSORS), **meta}
        (tmp / META).write_text(json.dumps(doc, indent=1, default=str))
        for f in (TENSORS, META):
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # the same step saved twice (a resumed run re-reaching it): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    mine = [p for p in list_checkpoints(root) if _token(p) == meta.get("run_token")]
    for p in list_checkpoints(root):
        if p != final and (p not in mine or p in mine[:-keep]):
            shutil.rmtree(p, ignore_errors=True)
    return final


def _token(path: Path) -> str | None:
    try:
        return json.loads((path / META).read_text()).get("run_token")
    except (OSError, ValueError):
        return None


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify one checkpoint folder.

    Raises:
        ValueError: naming the file when it is missing, truncated or does not match its digest.
    """
    path = Path(path)
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"corrupted checkpoint {path / META} ({type(e).__name__}); "
                         f"delete {path} to resume from an older one, or set train.resume=false") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} has format {meta.get('format')!r}, this code reads {FORMAT}")
    if not (path / TENSORS).is_file() or sha256_file(path / TENSORS) != meta.get("sha256"):
        raise UserError(f"corrupted checkpoint {path / TENSORS} (missing or sha256 mismatch); "
                         f"delete {path} to resume from an older one, or set train.resume=false")
    return load_file(str(path / TENSORS)), meta


# ---------------------------------------------------------------------------------------------------------------
# Multi-process training: what differs per rank (batch RNG, RNGs), gathered into rank 0's checkpoint
# ---------------------------------------------------------------------------------------------------------------
# Rank 0's state keeps the single-process keys ("rng.torch", meta["sampler_rng"], ...), so a one-process checkpoint
# is unchanged; rank r > 0 adds "rank.r." tensors and meta["ranks"]["r"]. The weights, optimiser states and image
# pools are the same on every rank (DDP averages gradients; every rank queries one pool with the global batch,
# trainers.cyclegan.ImagePool.query_global) and stored once; each rank's pool digest shows they are.

RANK_PREFIX = "rank."


def pool_digest(trainer) -> str:
    """sha256 over a trainer's image pools and their RNG: equal digests mean the same pools."""
    h = hashlib.sha256(json.dumps(py_rng_state(trainer.pool_rng) if trainer.pool_rng else None).encode())
    for name in sorted(trainer.pools):
        h.update(name.encode())
        for img in trainer.pools[name].images:
            h.update(img.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def rank_state(trainer, sampler) -> tuple[dict[str, torch.Tensor], dict]:
    """This process's own state: its RNGs and its batch sampler's RNG, with a digest of its image pools.

    Args:
        trainer: a trainers.Trainer (its `pools` and `pool_rng`).
        sampler: a samplers.Sampler (its `rng`) or FileSampler (data order is a function of the step: None).
    """
    tensors, rng_meta = rng_state()
    meta = {"rng": rng_meta, "pools_sha256": pool_digest(trainer),
            "sampler_rng": sampler.rng.bit_generator.state if getattr(sampler, "rng", None) is not None else None}
    return {k: v.cpu() for k, v in tensors.items()}, meta


def gather_ranks(accelerator, tensors: dict[str, torch.Tensor], meta: dict) -> list[tuple[dict, dict]]:
    """Every rank's (tensors, meta), in rank order, on every rank (one process: just its own)."""
    if accelerator.num_processes == 1:
        return [(tensors, meta)]
    from accelerate.utils import gather_object

    return gather_object([(tensors, meta)])  # CPU tensors: pickled over the process group


def pack_ranks(ranks: list[tuple[dict, dict]]) -> tuple[dict[str, torch.Tensor], dict]:
    """Ranks 1.. as prefixed tensors and meta["ranks"] (rank 0's state is saved under the plain keys).

    Raises:
        RuntimeError: naming the ranks whose image pools differ from rank 0's (the checkpoint stores rank 0's for
            all: they must be the same).
    """
    diverged = [r for r, (_, m) in enumerate(ranks) if m["pools_sha256"] != ranks[0][1]["pools_sha256"]]
    if diverged:
        raise RuntimeError(f"ranks {diverged} hold other image pools than rank 0: the ranks must query one pool "
                           f"with the global batch (ImagePool.query_global)")
    tensors, meta = {}, {"num_processes": len(ranks), "ranks": {}}
    for r, (t, m) in enumerate(ranks[1:], start=1):
        tensors.update({f"{RANK_PREFIX}{r}.{k}": v for k, v in t.items()})
        meta["ranks"][str(r)] = m
    return tensors, meta


def for_rank(tensors: dict[str, torch.Tensor], meta: dict, rank: int, num_processes: int) -> tuple[dict, dict]:
    """A checkpoint as rank `rank` must load it: its own sampler and RNGs in place of rank 0's, the shared rest.

    Raises:
        UserError: the checkpoint was written by another number of processes (its per-rank batch streams cannot be
            continued exactly), or by a version whose ranks kept image pools of their own.
    """
    written = meta.get("num_processes", 1)
    if written != num_processes:
        raise UserError(f"checkpoint at step {meta.get('step')} was written by {written} process(es), this run has "
                         f"{num_processes}; resume with the same --num_processes or set train.resume=false")
    if any("pools" in own for own in meta.get("ranks", {}).values()):
        raise UserError(f"checkpoint at step {meta.get('step')} holds an image pool per rank (written before the "
                         f"ranks shared one pool of the global batch); it cannot be continued exactly: set "
                         f"train.resume=false to start over")
    if rank == 0:
        return {k: v for k, v in tensors.items() if not k.startswith(RANK_PREFIX)}, meta
    own, prefix = meta["ranks"][str(rank)], f"{RANK_PREFIX}{rank}."
    shared = {k: v for k, v in tensors.items() if not k.startswith(("rng.", RANK_PREFIX))}
    shared.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return shared, {**meta, "rng": own["rng"], "sampler_rng": own["sampler_rng"]}


def state_digest(modules: dict[str, torch.nn.Module]) -> str:
    """sha256 over every parameter and buffer, bit for bit: equal digests mean identical weights."""
    h = hashlib.sha256()
    for name in sorted(modules):
        state = modules[name].state_dict()
        for key in sorted(state):
            h.update(f"{name}.{key}".encode())
            h.update(state[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_ranks_agree(reports: list[dict]) -> list[dict]:
    """Each rank's {"rank", "steps", "digest"}, after checking that all ranks trained the same weights.

    Raises:
        RuntimeError: naming the ranks whose weights differ from rank 0's (a DDP desync: gradients were not
            averaged, or a rank loaded other state).
    """
    diverged = [r["rank"] for r in reports if r["digest"] != reports[0]["digest"]]
    if diverged:
        raise RuntimeError(f"ranks {diverged} finished with other weights than rank 0 "
                           f"({', '.join(r['digest'][:12] for r in reports)}): the processes diverged")
    return reports
