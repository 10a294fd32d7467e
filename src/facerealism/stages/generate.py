"""Stage `generate`: render (schnell-like, dev-like) image pairs for every prompt, resumably and in shards."""

# Crash safety, in order of the guarantees:
#   1. every PNG is written atomically (temporary file + rename), so a file on disk is complete;
#   2. the dev image of a pair is written after its schnell image, and a pair counts as done only
#      when both exist, so a crash between the two writes redoes that pair;
#   3. the manifest is rebuilt from the files on disk after rendering, so it equals the finished pairs;
#   4. temporary files a killed run left behind (".{id}.png.xxxx.tmp") are removed on the next run,
#      each shard removing only its own ids' leftovers so parallel shards never delete each other's.
# Shards: prompt i belongs to shard i % shards. A shard run renders its own pairs (and reference
# images), then rebuilds the manifest from disk; the last shard to finish writes the complete one,
# and flows/generate.py rebuilds it once more after all shards.

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facerealism.backends import Backend, build_backend  # torch/diffusers load only when a backend renders
from facerealism.config import Config
from facerealism.data import catalog
from facerealism.errors import UserError
from facerealism.files import read_parquet, save_png, sha256_file, write_json, write_parquet
from facerealism.progress import RateLog, progress

MANIFEST_COLUMNS = [
    "id", "prompt", "seed", "template", "region", "gender", "schnell_path", "dev_path",
    "schnell_sha256", "dev_sha256", "width", "height", "backend", "params",
]
REFERENCE_COLUMNS = ["id", "prompt", "seed", "template", "region", "gender", "path", "sha256",
                     "width", "height", "backend", "params"]
PROMPT_COLUMNS = {"id", "prompt", "seed", "template", "region", "gender"}
_TMP = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")  # files.atomic_write_bytes: ".{name}.{random}.tmp"
_LOADED: dict[str, Backend] = {}  # one backend (pipelines loaded once) per worker process, keyed by its spec


def run(cfg: Config) -> dict:
    _check_writable(pairs_dir(cfg))
    if has_stale_renders(cfg):
        load_backend(cfg, cfg.generate.shard_index)  # a model that cannot load must fail before old pairs go
    prepare(cfg, clean=cfg.generate.shard_index is None)
    shard = run_shard(cfg, cfg.generate.shard_index)
    summary = finalize(cfg)
    return {"pairs": summary["pairs"], "generated": shard["generated"], "skipped": shard["skipped"],
            "reference": summary["reference"], "shard": shard["shard"], "backend": cfg.generate.backend,
            "path": summary["path"]}


def cached_backend(cfg: Config) -> Backend:
    """The backend for cfg, built once per process: a worker that renders several shards loads its pipelines once."""
    backend = build_backend(cfg)
    key = json.dumps({"backend": backend.name, **backend.describe(), "device": _device(cfg)}, sort_keys=True)
    return _LOADED.setdefault(key, backend)


def _device(cfg: Config) -> str | None:
    section = getattr(cfg.generate, cfg.generate.backend, None)
    return getattr(section, "device", None)


def pairs_dir(cfg: Config) -> Path:
    return catalog.PAIRS.path(cfg)


def reference_dir(cfg: Config) -> Path:
    return catalog.REFERENCE.path(cfg)


def pair_paths(cfg: Config, pair_id: str) -> tuple[Path, Path]:
    root = pairs_dir(cfg)
    return root / "schnell" / f"{pair_id}.png", root / "dev" / f"{pair_id}.png"


def reference_path(cfg: Config, pair_id: str) -> Path:
    return reference_dir(cfg) / "images" / f"{pair_id}.png"


def read_prompts(cfg: Config) -> pd.DataFrame:
    prompts = read_parquet(catalog.PROMPTS.path(cfg))
    missing = PROMPT_COLUMNS - set(prompts.columns)
    if missing:
        raise UserError(f"prompts.parquet lacks column(s) {sorted(missing)}; rerun `facerealism stage prompts`")
    return prompts.reset_index(drop=True)


def reference_rows(prompts: pd.DataFrame, count: int) -> pd.DataFrame:
    """`count` prompts spread evenly over the prompt table, so both templates and every stratum are represented."""
    if count <= 0:
        return prompts.iloc[:0]
    picks = np.unique(np.linspace(0, len(prompts) - 1, min(count, len(prompts))).round().astype(int))
    return prompts.iloc[picks]


def shard_of(rows: pd.DataFrame, shards: int, index: int) -> pd.DataFrame:
    """Round-robin over the row positions: balanced shards, stable for a fixed prompt table."""
    return rows.iloc[index::shards]


def _check_writable(directory: Path, key: str = "paths.data") -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise UserError(f"{key}: cannot write to {directory} ({e.strerror or e}); "
                         f"point {key} at a writable directory") from None


def current_spec(cfg: Config) -> dict:
    backend = build_backend(cfg)  # cheap: backends load their models lazily
    return {"backend": backend.name, **backend.describe()}


def has_stale_renders(cfg: Config) -> bool:
    """True when finished images exist that were rendered with other params, and prepare() would delete them."""
    spec = current_spec(cfg)
    for directory in (pairs_dir(cfg), reference_dir(cfg)):
        path = directory / "generation.json"
        if path.exists() and json.loads(path.read_text()) != spec and any(directory.rglob("*.png")):
            return True
    return False


def load_backend(cfg: Config, index: int | None = None) -> float:
    """Load this process's backend (pipelines included) now; returns the seconds it took.

    Called before stale renders are deleted, so a wrong model id or folder fails while the old pairs still exist.
    """
    t0 = time.perf_counter()
    cached_backend(_for_shard(cfg, index)).load()
    return time.perf_counter() - t0


def _sync_spec(directory: Path, spec: dict, subdirs: tuple[str, ...]) -> None:
    """Finished images are reused only if rendered with the same backend and params; others are stale and removed
    (DVC's cache keeps earlier versions)."""
    spec_path = directory / "generation.json"
    if spec_path.exists() and json.loads(spec_path.read_text()) != spec:
        for sub in subdirs:
            shutil.rmtree(directory / sub, ignore_errors=True)
    write_json(spec_path, spec)


def remove_stray_temporaries(folders: list[Path], ids: set[str] | None = None) -> int:
    """Delete temporary files a killed run left behind; with `ids`, only those of these pair ids."""
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            m = _TMP.match(f.name)
            if m and (ids is None or m["name"].removesuffix(".png") in ids):
                f.unlink(missing_ok=True)
                removed += 1
    return removed


def prepare(cfg: Config, clean: bool = True) -> dict:
    """Before any shard renders: check the output is writable, drop stale renders, record the spec, clean temporaries.

    Callers load the backend first when has_stale_renders(cfg): stale renders are deleted here.

    Args:
        clean: remove every stray temporary file; False when other shards may be writing right now.
    Returns:
        The spec written to both generation.json files.
    """
    for d in (pairs_dir(cfg), reference_dir(cfg)):
        _check_writable(d)
    spec = current_spec(cfg)
    _sync_spec(pairs_dir(cfg), spec, ("schnell", "dev"))
    _sync_spec(reference_dir(cfg), spec, ("images",))
    if clean:
        remove_stray_temporaries(_image_folders(cfg))
    return spec


def _image_folders(cfg: Config) -> list[Path]:
    return [pairs_dir(cfg) / "schnell", pairs_dir(cfg) / "dev", reference_dir(cfg) / "images"]


def pair_done(cfg: Config, pair_id: str) -> bool:
    return all(p.exists() for p in pair_paths(cfg, pair_id))


def run_shard(cfg: Config, index: int | None = None, show_progress: bool = True, log=None) -> dict:
    """Render the missing pairs (and reference images) of one shard with this process's backend.

    Args:
        cfg: the config; generate.shards says how the prompts are split.
        index: the shard to render; None renders every shard.
        show_progress: draw a rich bar with pairs/s and ETA.
        log: a callable taking one line (e.g. Prefect's run logger .info): progress with pairs/s and ETA every 30 s,
            for workers whose terminal nobody sees.
    Returns:
        {"shard", "generated", "skipped", "reference_generated", "seconds", "load_seconds", "pid"}; seconds includes the
        pipeline load (load_seconds: import + from_pretrained; under a millisecond when this process had it loaded).
    """
    g = cfg.generate
    prompts = read_prompts(cfg)
    mine = prompts if index is None else shard_of(prompts, g.shards, index)
    refs = reference_rows(prompts, g.reference_count)
    refs = refs if index is None else shard_of(refs, g.shards, index)
    if index is not None:  # a shard cleans only its own leftovers: other shards may be writing theirs right now
        remove_stray_temporaries(_image_folders(cfg), set(mine["id"]) | set(refs["id"]))
    todo = mine[[not pair_done(cfg, i) for i in mine["id"]]]
    ref_todo = refs[[not reference_path(cfg, i).exists() for i in refs["id"]]]
    label = "" if index is None else f" shard {index}/{g.shards}"
    t0 = time.perf_counter()
    load_seconds = 0.0
    if len(todo) or len(ref_todo):
        load_seconds = load_backend(cfg, index)  # timed apart from rendering: throughput figures should not hide it
        backend = cached_backend(_for_shard(cfg, index))
        with progress() if show_progress else contextlib.nullcontext() as bar:
            if show_progress:
                task = bar.add_task(f"generate [{backend.name}]{label}", total=len(todo))
            lines = RateLog(len(todo), f"generate [{backend.name}]{label}", log) if log else None
            for pair_id, schnell, dev in backend.generate(todo):
                schnell_path, dev_path = pair_paths(cfg, pair_id)
                save_png(schnell_path, schnell)
                save_png(dev_path, dev)  # last: its presence marks the pair done
                if show_progress:
                    bar.advance(task)
                if lines:
                    lines.advance()
            if len(ref_todo):
                if show_progress:
                    task = bar.add_task(f"reference [{backend.name}]{label}", total=len(ref_todo))
                for pair_id, image in backend.reference(ref_todo):
                    save_png(reference_path(cfg, pair_id), image)
                    if show_progress:
                        bar.advance(task)
    return {"shard": index, "generated": len(todo), "skipped": len(mine) - len(todo),
            "reference_generated": len(ref_todo), "seconds": time.perf_counter() - t0, "load_seconds": load_seconds,
            "pid": os.getpid()}


def _for_shard(cfg: Config, index: int | None) -> Config:
    """On a machine with several GPUs and device auto, shard i renders on GPU i % count (one pipeline per GPU)."""
    section = getattr(cfg.generate, cfg.generate.backend, None)
    if index is None or getattr(section, "device", None) != "auto":
        return cfg
    import torch

    if torch.cuda.device_count() < 2:
        return cfg
    cfg = cfg.model_copy(deep=True)
    getattr(cfg.generate, cfg.generate.backend).device = f"cuda:{index % torch.cuda.device_count()}"
    return cfg


def rebuild_manifest(cfg: Config, prompts: pd.DataFrame, backend_name: str, params: dict) -> pd.DataFrame:
    """The manifest is derived from what is on disk, so it always equals the finished pairs."""
    rows = []
    for row in prompts.itertuples():
        schnell, dev = pair_paths(cfg, row.id)
        if not (schnell.exists() and dev.exists()):
            continue
        rows.append({
            "id": row.id, "prompt": row.prompt, "seed": int(row.seed), "template": row.template,
            "region": row.region, "gender": row.gender,
            "schnell_path": str(schnell), "dev_path": str(dev),
            "schnell_sha256": sha256_file(schnell), "dev_sha256": sha256_file(dev),
            "width": cfg.generate.size, "height": cfg.generate.size,
            "backend": backend_name, "params": json.dumps(params, sort_keys=True),
        })
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def rebuild_reference_manifest(cfg: Config, prompts: pd.DataFrame, backend_name: str, params: dict) -> pd.DataFrame:
    rows = []
    for row in prompts.itertuples():
        path = reference_path(cfg, row.id)
        if path.exists():
            rows.append({
                "id": row.id, "prompt": row.prompt, "seed": int(row.seed), "template": row.template,
                "region": row.region, "gender": row.gender, "path": str(path), "sha256": sha256_file(path),
                "width": cfg.generate.size, "height": cfg.generate.size,
                "backend": backend_name, "params": json.dumps(params, sort_keys=True),
            })
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)


def finalize(cfg: Config) -> dict:
    """Rebuild both manifests from the files on disk and draw the contact sheet.

    Returns:
        {"pairs", "reference", "path", "reference_path", "samples"}.
    """
    prompts = read_prompts(cfg)
    spec = json.loads((pairs_dir(cfg) / "generation.json").read_text())
    name, params = spec["backend"], {k: v for k, v in spec.items() if k != "backend"}
    manifest = rebuild_manifest(cfg, prompts, name, params)
    out = pairs_dir(cfg) / catalog.PAIRS_MANIFEST
    write_parquet(out, manifest)
    # Only the selected reference prompts: a smaller reference_count leaves earlier extras out of the manifest.
    reference = rebuild_reference_manifest(cfg, reference_rows(prompts, cfg.generate.reference_count), name, params)
    ref_out = reference_dir(cfg) / catalog.PAIRS_MANIFEST
    write_parquet(ref_out, reference)
    samples = save_contact_sheet(cfg, manifest)
    return {"pairs": len(manifest), "reference": len(reference), "path": str(out), "reference_path": str(ref_out),
            "samples": str(samples) if samples else None}


def save_contact_sheet(cfg: Config, manifest: pd.DataFrame) -> Path | None:
    """reports/generate_samples.png: schnell images over their dev images, for a person to eyeball the pairs."""
    from facerealism.files import load_rgb
    from facerealism.report.grids import save_grid

    n = min(cfg.generate.sample_pairs, len(manifest))
    if n == 0:
        return None
    rows = manifest.iloc[np.linspace(0, len(manifest) - 1, n).round().astype(int)]
    schnell = np.stack([load_rgb(p) for p in rows["schnell_path"]])  # (n, h, w, 3)
    dev = np.stack([load_rgb(p) for p in rows["dev_path"]])
    scale = max(1, 128 // cfg.generate.size)
    return save_grid(catalog.GENERATE_SAMPLES.path(cfg), [schnell, dev], ["schnell", "dev"], scale)
