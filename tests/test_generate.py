"""Stage `generate`: crash safety under kill -9, shards, the reference set, bad input, the Dask flow on tiny FLUX."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facerealism.bench import servers
from facerealism.config import ConfigError, load_config
from facerealism.files import load_rgb, sha256_file
from facerealism.orchestration import scaleout
from facerealism.stages import generate, run_stage

from .conftest import ROOT, cli_env


def synthetic_cfg(root: Path, *extra: str):
    return load_config(ROOT / "params.yaml", [
        "prompts.n_enriched=10", "prompts.n_baseline=2", "generate.size=32", "train.crop=32",
        f"paths.data={root}/data", f"paths.reports={root}/reports", *extra])


def files_on_disk(root: Path, side: str) -> set[str]:
    return {p.stem for p in (root / "data/pairs" / side).glob("*.png")}


@pytest.mark.slow  # subprocesses or servers: the full layer, not the inner loop
def test_kill_9_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path):
    params = ["prompts.n_enriched=400", "prompts.n_baseline=0", "generate.size=64",
              f"paths.data={tmp_path}/data", f"paths.reports={tmp_path}/reports"]
    cfg = load_config(ROOT / "params.yaml", params)
    run_stage("prompts", cfg)
    args = [str(Path(os.sys.executable).parent / "facerealism"), "stage", "generate", "--params", str(ROOT / "params.yaml")]
    for p in params:
        args += ["--set", p]
    proc = subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dev_dir = tmp_path / "data/pairs/dev"
    deadline = time.monotonic() + 120
    while (len(list(dev_dir.glob("*.png"))) if dev_dir.is_dir() else 0) < 30:
        assert proc.poll() is None, f"generate ended before it could be killed: {proc.stderr.read()[-500:]!r}"
        assert time.monotonic() < deadline, "generate produced no pairs within 120 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = files_on_disk(tmp_path, "dev")
    assert 30 <= len(done_before) < 400, "the kill must land mid-run"
    assert not (tmp_path / "data/pairs/manifest.parquet").exists()

    # What a crash can leave besides: a pair whose dev image is missing, and temporary files of atomic writes.
    victim = sorted(done_before)[0]
    (dev_dir / f"{victim}.png").unlink()
    stray = [dev_dir / f".{victim}.png.k1ll3d.tmp", tmp_path / "data/pairs/schnell" / ".e00399.png.abcd_12.tmp"]
    for f in stray:
        f.write_bytes(b"half a png")
    kept = {i: (dev_dir / f"{i}.png").stat().st_mtime_ns for i in done_before - {victim}}

    out = run_stage("generate", cfg)
    assert out["pairs"] == 400 and out["skipped"] == len(kept) and out["generated"] == 400 - len(kept)
    manifest = pd.read_parquet(tmp_path / "data/pairs/manifest.parquet")
    assert manifest["id"].is_unique
    ids = set(manifest["id"])
    assert ids == files_on_disk(tmp_path, "schnell") == files_on_disk(tmp_path, "dev") == set(
        pd.read_parquet(tmp_path / "data/prompts.parquet")["id"])
    assert not [f for f in (tmp_path / "data/pairs").rglob("*.tmp")]
    # Finished pairs were not rendered again; the victim was, and equals an uninterrupted render.
    assert all((dev_dir / f"{i}.png").stat().st_mtime_ns == t for i, t in kept.items())
    from facerealism.backends.painter import render_pair

    row = manifest.set_index("id").loc[victim]
    schnell, dev = render_pair(int(row.seed), 64, **cfg.generate.synthetic.model_dump())
    np.testing.assert_array_equal(load_rgb(row.dev_path), dev)
    np.testing.assert_array_equal(load_rgb(row.schnell_path), schnell)
    for r in manifest.itertuples():  # hashes describe the files as they are now
        assert sha256_file(r.dev_path) == r.dev_sha256


def test_shards_render_disjoint_parts_that_add_up_to_the_unsharded_run(tmp_path):
    whole = synthetic_cfg(tmp_path / "whole")
    run_stage("prompts", whole)
    run_stage("generate", whole)
    ref = pd.read_parquet(tmp_path / "whole/data/pairs/manifest.parquet")

    sharded = [synthetic_cfg(tmp_path / "sharded", "generate.shards=2", f"generate.shard_index={i}") for i in (0, 1)]
    run_stage("prompts", sharded[0])
    first = run_stage("generate", sharded[0])
    assert first["generated"] == 6 and first["pairs"] == 6  # the manifest holds what is on disk so far
    # Shard 0 must not delete a temporary file of shard 1, which may be mid-write on another worker.
    other = tmp_path / "sharded/data/pairs/dev" / ".e00001.png.w0rk3r.tmp"
    mine = tmp_path / "sharded/data/pairs/dev" / ".e00000.png.w0rk3r.tmp"
    other.write_bytes(b"x"), mine.write_bytes(b"x")
    assert run_stage("generate", sharded[0])["generated"] == 0
    assert other.exists() and not mine.exists()
    second = run_stage("generate", sharded[1])
    assert second["generated"] == 6 and second["pairs"] == 12
    manifest = pd.read_parquet(tmp_path / "sharded/data/pairs/manifest.parquet")
    pd.testing.assert_series_equal(manifest["dev_sha256"], ref["dev_sha256"])  # same pixels, same order
    with pytest.raises(ConfigError, match="shard_index"):
        synthetic_cfg(tmp_path, "generate.shards=2", "generate.shard_index=2")


def test_reference_set_is_separate_and_independent_of_the_fast_image(tmp_path):
    cfg = synthetic_cfg(tmp_path, "generate.reference_count=3")
    run_stage("prompts", cfg)
    out = run_stage("generate", cfg)
    assert out["reference"] == 3 and out["pairs"] == 12
    ref = pd.read_parquet(tmp_path / "data/reference/manifest.parquet")
    assert len(ref) == 3 and set(ref["template"]) == {"enriched", "baseline"}  # spread over the prompt table
    pairs = pd.read_parquet(tmp_path / "data/pairs/manifest.parquet").set_index("id")
    for r in ref.itertuples():
        assert Path(r.path).parent == tmp_path / "data/reference/images"
        assert r.sha256 != pairs.loc[r.id, "dev_sha256"]  # not the img2img dev image of the pair
    # Turned off, the reference manifest is empty (the DVC output still exists) and the pairs stay.
    off = synthetic_cfg(tmp_path, "generate.reference_count=0")
    assert run_stage("generate", off)["generated"] == 0
    assert len(pd.read_parquet(tmp_path / "data/reference/manifest.parquet")) == 0


def test_a_shard_logs_pairs_per_second_and_eta_for_workers_without_a_terminal(tmp_path):
    from facerealism.progress import RateLog

    cfg = synthetic_cfg(tmp_path)
    run_stage("prompts", cfg)
    lines: list[str] = []
    result = generate.run_shard(cfg, show_progress=False, log=lines.append)
    assert result["generated"] == 12
    assert len(lines) == 1 and lines[0].startswith("generate [synthetic]: 12/12 pairs, ")  # quick: the last line only
    every: list[str] = []
    log = RateLog(3, "x", every.append, every_s=0)
    for _ in range(3):
        log.advance()
    assert [line.split(",")[0] for line in every] == ["x: 1/3 pairs", "x: 2/3 pairs", "x: 3/3 pairs"]
    assert every[-1].endswith("eta 0:00:00") and "pairs/s" in every[0]


def test_contact_sheet_shows_schnell_over_dev(tmp_path):
    cfg = synthetic_cfg(tmp_path, "generate.sample_pairs=4")
    run_stage("prompts", cfg)
    run_stage("generate", cfg)
    sheet = load_rgb(tmp_path / "reports/generate_samples.png")
    scale = 128 // 32
    assert sheet.shape[0] == 2 * (32 * scale + 2) + 2  # two rows: schnell, dev
    margin = sheet.shape[1] - (4 * (32 * scale + 2) + 2)  # four pairs after a label column as wide as its labels
    assert 40 < margin < 200 and sheet[:, :margin].min() < 128  # the labels are drawn there, in dark ink


def test_bad_input_fails_in_one_line_and_keeps_finished_pairs(tmp_path):
    cfg = synthetic_cfg(tmp_path)
    run_stage("prompts", cfg)
    run_stage("generate", cfg)
    before = {p: p.read_bytes() for p in (tmp_path / "data/pairs").rglob("*.png")}

    with pytest.raises(ConfigError, match=r"generate\.backend"):
        synthetic_cfg(tmp_path, "generate.backend=nope")
    # New params make the finished pairs stale, but a model that cannot load must fail before they are deleted.
    with pytest.raises(ValueError, match=r"generate\.diffusers\.fast_model: no such local directory"):
        run_stage("generate", synthetic_cfg(tmp_path, "generate.backend=diffusers",
                                            f"generate.diffusers.fast_model={tmp_path}/no-such-model"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"paths\.data: cannot write to .*a-file"):
        run_stage("generate", synthetic_cfg(tmp_path, f"paths.data={blocker}/data"))
    prompts = pd.read_parquet(tmp_path / "data/prompts.parquet")
    prompts.drop(columns=["seed", "region"]).to_parquet(tmp_path / "data/prompts.parquet")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['region', 'seed'\]") as err:
        run_stage("generate", cfg)
    assert "\n" not in str(err.value)
    assert {p: p.read_bytes() for p in (tmp_path / "data/pairs").rglob("*.png")} == before


# --- real diffusers pipelines on tiny random FLUX (no weights, no hub) ---

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    from facerealism.backends.tiny_flux import build_tiny_flux

    root = tmp_path_factory.mktemp("tiny_flux")
    return {"schnell": build_tiny_flux(root / "schnell", seed=0, variant="schnell"),
            "dev": build_tiny_flux(root / "dev", seed=10, variant="dev")}


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_diffusers_backend_resolves_flux_through_autopipeline(tiny, tmp_path, one_thread):
    from facerealism.backends.diffusers import DiffusersBackend

    cfg = synthetic_cfg(tmp_path, "generate.backend=diffusers", f"generate.diffusers.fast_model={tiny['schnell']}",
                        f"generate.diffusers.slow_model={tiny['dev']}", "generate.diffusers.dtype=float32",
                        "generate.diffusers.fast_kwargs={num_inference_steps: 2, guidance_scale: 0.0}",
                        "generate.diffusers.slow_kwargs={num_inference_steps: 4, guidance_scale: 3.0, "
                        "max_sequence_length: 64}", "generate.reference_count=2", "prompts.n_enriched=3",
                        "prompts.n_baseline=0")
    run_stage("prompts", cfg)
    out = run_stage("generate", cfg)
    assert out["pairs"] == 3 and out["reference"] == 2
    backend = generate.cached_backend(cfg)  # the instance the stage rendered with, pipelines loaded
    assert type(backend.fast_pipe).__name__ == "FluxPipeline"
    assert type(backend.slow_pipe).__name__ == "FluxImg2ImgPipeline"
    assert type(backend.ref_pipe).__name__ == "FluxPipeline" and backend.ref_pipe.transformer is backend.slow_pipe.transformer
    m = pd.read_parquet(tmp_path / "data/pairs/manifest.parquet")
    assert json.loads(m["params"].iloc[0])["slow_kwargs"]["num_inference_steps"] == 4
    for r in m.itertuples():
        assert load_rgb(r.dev_path).std() > 4 and r.schnell_sha256 != r.dev_sha256

    with pytest.raises(ValueError, match=r"generate\.diffusers\.slow_kwargs: \['strength'\]"):
        DiffusersBackend(synthetic_cfg(tmp_path, "generate.backend=diffusers",
                                       "generate.diffusers.slow_kwargs={strength: 0.3}"))
    # (An uncached hub id gives the same one line as in test_flux.py, but AutoPipeline retries the unreachable
    # hub for ~25 s first, so it is not repeated here.)
    wrong = DiffusersBackend(synthetic_cfg(tmp_path, "generate.backend=diffusers",
                                           f"generate.diffusers.fast_model={tiny['schnell'] / 'vae'}"))
    with pytest.raises(ValueError, match=r"no model_index\.json"):
        wrong.load()


def flux_flow_overrides(tiny, root: Path, *extra: str) -> list[str]:
    return ["generate.backend=flux", "generate.size=32", "train.crop=32", "prompts.n_enriched=5",
            "prompts.n_baseline=1", f"generate.flux.fast_model={tiny['schnell']}",
            f"generate.flux.slow_model={tiny['dev']}", "generate.flux.slow_steps=4",
            f"paths.data={root}/data", f"paths.reports={root}/reports", *extra]


def run_generate_flow(overrides: list[str], cwd: Path, env: dict) -> dict:
    """flows/generate.run in a fresh process (its own Prefect settings); returns the flow's result."""
    run_stage("prompts", load_config(ROOT / "params.yaml", overrides))
    script = (f"import json, sys; from flows.generate import run; "
              f"r = run({str(ROOT / 'params.yaml')!r}, {overrides!r}); print('RESULT', json.dumps(r))")
    env = {**cli_env(), "OMP_NUM_THREADS": "1", "PREFECT_HOME": str(cwd / ".prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", **env}  # the shared machine can be slow
    done = subprocess.run([os.sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1])


@pytest.mark.slow
def test_flow_renders_shards_on_two_dask_workers(tiny, tmp_path):
    """Two local worker processes, one pipeline each, then one manifest from disk (flows/generate.py)."""
    result = run_generate_flow(flux_flow_overrides(tiny, tmp_path, "generate.workers=2"), tmp_path, {})
    assert result["pairs"] == 6
    assert sorted(s["shard"] for s in result["shards"]) == [0, 1]
    assert sorted(s["generated"] for s in result["shards"]) == [3, 3]
    assert len({s["pid"] for s in result["shards"]}) == 2  # two worker processes, one pipeline each
    assert all(s["load_seconds"] > 0 for s in result["shards"])  # each worker loaded its own pipelines
    manifest = pd.read_parquet(tmp_path / "data/pairs/manifest.parquet")
    assert set(manifest["id"]) == files_on_disk(tmp_path, "dev") == files_on_disk(tmp_path, "schnell")
    assert len(manifest) == 6 and (manifest["backend"] == "flux").all()


def render_settings_reader():
    """Reads RENDER_WORKER_DASK_CONFIG's keys where it is called; a lambda, so client.run ships it by value (this
    test module is not importable on the workers)."""
    keys = list(scaleout.RENDER_WORKER_DASK_CONFIG)
    return lambda: tuple(__import__("dask").config.get(k) for k in keys)


def settings_on(client) -> set[tuple]:
    return set(client.run(render_settings_reader()).values())


RENDER_SETTINGS = (False, "1s", "1s", "5s")  # no stack-sampling profiler, slow ticks and monitors


def test_the_flows_local_cluster_hands_render_settings_to_its_workers():
    import dask
    from distributed import Client

    from facerealism.cluster import WORKER_MALLOC_ENV
    from facerealism.orchestration.scaleout import local_cluster

    assert render_settings_reader()() != RENDER_SETTINGS  # Dask's defaults here: only the workers are changed
    with local_cluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert settings_on(client) == {RENDER_SETTINGS}
        # glibc's settled thresholds, not the nanny's lone 64 KiB trim threshold (1.6x the CPU on feature shards)
        keys = list(WORKER_MALLOC_ENV)
        env = client.run(lambda: tuple(__import__("os").environ.get(k) for k in keys))
        assert set(env.values()) == {tuple(str(v) for v in WORKER_MALLOC_ENV.values())}
    assert dask.config.get("distributed.worker.profile.enabled") is True


def progress_lines(api_url: str, text: str, wait: float = 20.0) -> list[str]:
    """Log lines of the Prefect server containing `text`, once at least two have arrived (workers send in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + wait
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while True:
            lines = [log.message for log in client.read_logs(limit=200) if text in log.message]
            if len(lines) >= 2 or time.monotonic() > deadline:
                return lines
            time.sleep(0.5)


@pytest.mark.slow
def test_flow_on_a_long_lived_dask_cluster_loads_each_pipeline_once(tiny, tmp_path):
    """The scale-out layout (infra/dask-cluster.yaml): flows submit to an existing scheduler through
    FACEREALISM_DASK_ADDRESS and a worker keeps its pipelines for every later shard and flow."""
    from distributed import Client

    prefect = servers.start_prefect_server(tmp_path / "prefect-home", postgres=False)
    try:
        api = {"PREFECT_API_URL": prefect.api_url}
        # INFO: the test session keeps Prefect at WARNING, which would drop the progress lines.
        worker_env = {**api, "PREFECT_LOGGING_LEVEL": "INFO"}
        with servers.start_dask_cluster(1, env=worker_env, log_dir=tmp_path / "dask") as cluster:
            with Client(cluster.address) as client:
                worker_pids = set(client.run(os.getpid).values())
                assert settings_on(client) == {RENDER_SETTINGS}
            env = {**api, "FACEREALISM_DASK_ADDRESS": cluster.address}
            first = run_generate_flow(flux_flow_overrides(tiny, tmp_path / "a", "generate.shards=2"), tmp_path, env)
            second = run_generate_flow(flux_flow_overrides(tiny, tmp_path / "b", "generate.shards=2"), tmp_path, env)
            lines = progress_lines(prefect.api_url, "generate [flux] shard 1/2: 3/3 pairs")
    finally:
        servers.stop_prefect_server(prefect)
    # What people read in Prefect's UI: each shard's pairs/s and ETA, sent from the worker process.
    assert len(lines) == 2 and all(" pairs/s, eta 0:00:00" in line for line in lines)  # one per flow
    assert first["pairs"] == second["pairs"] == 6
    shards = sorted(first["shards"], key=lambda s: s["load_seconds"], reverse=True)
    assert {s["pid"] for s in shards + second["shards"]} == worker_pids  # rendered on the cluster, not locally
    # Importing and loading takes seconds in a fresh worker; finding the pipelines loaded takes under a millisecond.
    assert shards[0]["load_seconds"] > 0.5 and shards[1]["load_seconds"] < 0.1  # the second shard reused the first's
    assert all(s["load_seconds"] < 0.1 and s["generated"] == 3 for s in second["shards"])  # and so did a later flow
