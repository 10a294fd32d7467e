"""Training in two processes (accelerate, gloo on CPU): both ranks step in sync, one checkpoint, exact resume."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from facerealism.config import load_config
from facerealism.stages import run_stage
from facerealism.trainers import ImagePool, checkpoint

from .conftest import cli_env, dataset_project, tiny_overrides

# The quality check below runs the default recipe and compares the 2-process run with two single-process seeds of the
# same global batch (batch_size 8 vs 2 x 4). Its margin is the larger of the two seeds' own spread and twice the
# seed-to-seed standard deviation of one process on this data (seeds 0-5, validation 10 %): the two seeds' spread alone
# is a margin that a run matching one process misses one time in three. Measured over seeds 0-5 (mean +- sd), final
# cycle L1 / validation cycle SSIM: one process 0.0349 +- 0.0034 / 0.893 +- 0.021; two processes with an image pool
# per rank, each fed its own half-batch (before) 0.0316 +- 0.0034 / 0.907 +- 0.013; sharing one pool of the global
# batch (now) 0.0318 +- 0.0036 / 0.918 +- 0.016. At 60 steps the pool does not show in these numbers (the difference
# to one process is under 2 standard errors either way); test_the_ranks_query_one_pool_as_one_process_would checks it
# exactly. The earlier finding with the high-pass critic (0.0405 vs 0.0331-0.0341) did not reproduce here: seed 0's
# 2-process run gave 0.0363 before, 0.0374 now, one process 0.0313-0.0402 over seeds 0-5; with the default split
# (15 %) 0.0366 / 0.898 vs seeds 0-1 0.0335-0.0360 / 0.902-0.903.
SEED_SD = {"final_cycle_l1": 0.0034, "validation_cycle_ssim": 0.021}
EXACT = ["train.mixed_precision=fp32", "train.threads=1", "train.baselines=[]", "train.steps=60",
         "train.checkpoint_every=10", "train.log_every=10"]


# ---------------------------------------------------------------------------------------------------------------
# Per-rank state and the divergence check, without processes
# ---------------------------------------------------------------------------------------------------------------


class _Trainer:
    def __init__(self, seed: int, pool_seed: int = 0):
        self.pool_rng = random.Random(pool_seed)
        self.pool_rng.random()
        self.pools = {"A": ImagePool(1, self.pool_rng), "B": ImagePool(1, self.pool_rng)}
        self.pools["A"].images = [torch.full((1, 3, 4, 4), float(pool_seed))]


class _Sampler:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)


def test_each_rank_gets_back_its_own_batch_rng_and_rngs_and_the_one_pool():
    states = []
    for rank in range(3):
        torch.manual_seed(100 + rank)
        states.append(checkpoint.rank_state(_Trainer(rank), _Sampler(rank)))
    tensors, meta = checkpoint.pack_ranks(states)
    assert not any(".pool." in k for k in tensors)  # the pools are the same on every rank: stored once
    rank0_tensors, rank0_meta = states[0]
    # The trainer's own state (Trainer.state on rank 0) holds the one pool pair and its RNG.
    full = {**rank0_tensors, "net.G_A.w": torch.zeros(2), "pool.A": torch.zeros(1, 3, 4, 4), **tensors}
    doc = {"step": 7, "trainer": {"pools": {"A": 1, "B": 0}, "pool_rng": [3, [1, 2], None], "schedulers": 1},
           "rng": rank0_meta["rng"], "sampler_rng": rank0_meta["sampler_rng"], **meta}
    for rank in range(3):
        t, m = checkpoint.for_rank(full, doc, rank, 3)
        assert torch.equal(t["pool.A"], torch.zeros(1, 3, 4, 4)) and "pool.B" not in t and m["trainer"] == doc["trainer"]
        assert torch.equal(t["rng.torch"], states[rank][0]["rng.torch"]) and torch.equal(t["net.G_A.w"], torch.zeros(2))
        assert not any(k.startswith("rank.") for k in t)
        assert m["sampler_rng"] == _Sampler(rank).rng.bit_generator.state
    assert len({json.dumps(checkpoint.for_rank(full, doc, r, 3)[1]["sampler_rng"]) for r in range(3)}) == 3
    with pytest.raises(ValueError, match=r"written by 3 process\(es\), this run has 2; resume with the same"):
        checkpoint.for_rank(full, doc, 0, 2)
    # A one-process checkpoint (no per-rank block) loads in one process as before.
    assert checkpoint.for_rank(rank0_tensors, {"step": 1}, 0, 1) == (rank0_tensors, {"step": 1})


def test_a_rank_with_other_pools_or_a_checkpoint_with_a_pool_per_rank_is_refused():
    states = [checkpoint.rank_state(_Trainer(r, pool_seed=s), _Sampler(r)) for r, s in enumerate((0, 0, 1))]
    with pytest.raises(RuntimeError, match=r"ranks \[2\] hold other image pools than rank 0"):
        checkpoint.pack_ranks(states)
    old = {"step": 7, "num_processes": 2, "ranks": {"1": {"rng": {}, "sampler_rng": None, "pools": {"A": 1}}}}
    for rank in range(2):
        with pytest.raises(ValueError, match=r"holds an image pool per rank .* set train.resume=false"):
            checkpoint.for_rank({}, old, rank, 2)


class _Rank:
    """accelerate's view of one of `n` ranks whose micro-batches are `batches` (gather: all of them, rank order)."""

    def __init__(self, rank: int, batches: list[torch.Tensor]):
        self.process_index, self.num_processes, self.batches = rank, len(batches), batches

    def gather(self, images: torch.Tensor) -> torch.Tensor:
        assert torch.equal(images, self.batches[self.process_index])
        return torch.cat(self.batches)


def test_the_ranks_query_one_pool_as_one_process_would():
    """Two ranks of 3 fakes each get back what one process querying the 6 together gets, and keep one pool."""
    one, ranks = ImagePool(4, random.Random(5)), [ImagePool(4, random.Random(5)) for _ in range(2)]
    g = torch.Generator().manual_seed(0)
    for step in range(6):  # the pool fills in the first step; later steps swap
        fakes = torch.rand(6, 3, 2, 2, generator=g)
        halves = list(fakes.split(3))
        expected = one.query(fakes)
        got = [ranks[r].query_global(halves[r], _Rank(r, halves)) for r in range(2)]
        assert torch.equal(torch.cat(got), expected), step
        for pool in ranks:
            assert len(pool.images) == len(one.images) and all(map(torch.equal, pool.images, one.images))
        assert ranks[0].rng.getstate() == ranks[1].rng.getstate() == one.rng.getstate()
    # What the pools replaced: the test would pass with pools that returned their input.
    assert not torch.equal(expected, fakes)


def test_the_divergence_check_sees_one_flipped_bit():
    torch.manual_seed(0)
    nets = {"G": torch.nn.Linear(3, 2), "D": torch.nn.Linear(2, 1)}
    same = checkpoint.state_digest(nets)
    assert checkpoint.state_digest({k: nets[k] for k in ("D", "G")}) == same
    with torch.no_grad():
        w = nets["D"].weight.view(-1)
        w[0] = torch.nextafter(w[0], torch.tensor(2.0))
    other = checkpoint.state_digest(nets)
    assert other != same
    ok = [{"rank": 0, "steps": 5, "digest": same}, {"rank": 1, "steps": 5, "digest": same}]
    assert checkpoint.check_ranks_agree(ok) == ok
    with pytest.raises(RuntimeError, match=r"ranks \[1\] finished with other weights than rank 0"):
        checkpoint.check_ranks_agree([ok[0], {**ok[1], "digest": other}])


# ---------------------------------------------------------------------------------------------------------------
# Two real processes
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_dataset):
    """This module's copy of the tiny dataset; each run trains into its own models/ folder."""
    with dataset_project(tmp_path_factory.mktemp("mp"), tiny_dataset) as root:
        yield root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sets(root: Path, name: str, *extra: str) -> list[str]:
    return tiny_overrides(root) + EXACT + [f"paths.models={root / name / 'models'}",
                                           f"paths.reports={root / name / 'reports'}", *extra]


def launch(root: Path, name: str, *extra: str) -> subprocess.Popen:
    """`accelerate launch` of the train stage in 2 CPU processes (gloo)."""
    accelerate = str(Path(os.sys.executable).parent / "accelerate")
    # accelerate 1.15 starts one process for `--cpu --num_processes 2`; --multi_gpu with no visible GPU gives
    # two processes on the gloo backend.
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--main_process_port", str(_free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "facerealism.cli", "stage", "train", *(f"--set={s}" for s in _sets(root, name, *extra))]
    env = {**cli_env(), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process under it at once (torch's elastic agent puts the ranks in
    sessions of their own, so killing the launcher's process group would leave them training)."""
    import psutil

    root = psutil.Process(proc.pid)
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)
    proc.communicate()


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def report(root: Path, name: str) -> dict:
    return json.loads((root / name / "reports" / "train.json").read_text())


def weights(root: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(root / name / "models" / "head" / "head.safetensors"))


@pytest.mark.slow
def test_two_processes_step_in_sync_checkpoint_once_and_resume_exactly(data):
    finish(launch(data, "ref"))
    ref = report(data, "ref")
    # Both ranks trained every step and ended with bit-identical weights (train() raises otherwise).
    assert [(r["rank"], r["steps"]) for r in ref["ranks"]] == [(0, 60), (1, 60)]
    assert ref["ranks"][0]["digest"] == ref["ranks"][1]["digest"]
    # One writer: finished checkpoints only, each holding both ranks' own RNGs and the one pool pair they share.
    ckpt_dir = data / "ref" / "models" / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step-00000040", "step-00000050"]
    tensors, meta = checkpoint.load(ckpt_dir / "step-00000050")
    assert meta["num_processes"] == 2 and list(meta["ranks"]) == ["1"]
    assert meta["trainer"]["pools"] == {"A": 50, "B": 50} and tensors["pool.A"].shape[0] == 50
    assert not any(k.startswith("rank.1.pool") for k in tensors) and "pools" not in meta["ranks"]["1"]
    assert meta["sampler_rng"] != meta["ranks"]["1"]["sampler_rng"]  # the ranks drew different batches

    killed = data / "killed" / "models"
    proc = launch(data, "killed")
    deadline = time.monotonic() + 180
    while not list((killed / "checkpoints").glob("step-*")):
        assert proc.poll() is None, f"training exited before its first checkpoint: {proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.02)
    kill_tree(proc)
    assert not (killed / "head").exists(), "killed too late: training had finished"

    finish(launch(data, "killed", "train.resume=true"))
    resumed = report(data, "killed")
    assert 10 <= resumed["resumed_from_step"] < 60
    a, b = weights(data, "ref"), weights(data, "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["digest"] for r in resumed["ranks"]] == [r["digest"] for r in ref["ranks"]]
    strip = lambda h: [{k: v for k, v in x.items() if k != "steps_per_s"} for x in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(ref["history"])

    # Quality: one process with the same global batch (2 x 4) on the same data, within the spread of two seeds.
    single = [run_stage("train", load_config(data / "params.yaml", _sets(data, f"one{seed}", f"seed={seed}",
                                                                         "train.batch_size=8")))
              for seed in (0, 1)]
    assert all(s["ranks"] == [{"rank": 0, "steps": 60, "digest": s["ranks"][0]["digest"]}] for s in single)
    for key in ("validation_cycle_ssim", "final_cycle_l1"):
        lo, hi = sorted(s[key] for s in single)
        margin = max(hi - lo, 2 * SEED_SD[key])
        assert lo - margin <= ref[key] <= hi + margin, (key, ref[key], lo, hi)
