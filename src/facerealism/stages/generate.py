"""Stage `generate`: render (schnell-like, dev-like) image pairs for every prompt, resumably."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from facerealism.backends.flux import FluxBackend  # torch/diffusers load only when it renders
from facerealism.config import Config
from facerealism.files import read_parquet, save_png, sha256_file, write_json, write_parquet
from facerealism.progress import progress

MANIFEST_COLUMNS = [
    "id", "prompt", "seed", "template", "region", "gender", "schnell_path", "dev_path",
    "schnell_sha256", "dev_sha256", "width", "height", "backend", "params",
]


class SyntheticBackend:
    """Procedural portrait pairs: the offline stand-in for FLUX schnell -> dev."""

    name = "synthetic"

    def __init__(self, cfg: Config):
        self.size = cfg.generate.size
        self.params = cfg.generate.synthetic.model_dump()

    def generate(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        from facerealism.backends.synthetic import render_pair

        for row in rows.itertuples():
            schnell, dev = render_pair(int(row.seed), self.size, **self.params)
            yield row.id, schnell, dev

    def describe(self) -> dict:
        return {"size": self.size, **self.params}


BACKENDS = {"synthetic": SyntheticBackend, "flux": FluxBackend}


def build_backend(cfg: Config):
    name = cfg.generate.backend
    if name not in BACKENDS:
        raise ValueError(f"generate.backend: unknown backend {name!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[name](cfg)


def pair_paths(cfg: Config, pair_id: str) -> tuple[Path, Path]:
    root = Path(cfg.paths.data) / "pairs"
    return root / "schnell" / f"{pair_id}.png", root / "dev" / f"{pair_id}.png"


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


def run(cfg: Config) -> dict:
    prompts = read_parquet(Path(cfg.paths.data) / "prompts.parquet")
    missing = {"id", "prompt", "seed", "template", "region", "gender"} - set(prompts.columns)
    if missing:
        raise ValueError(f"prompts.parquet lacks column(s) {sorted(missing)}")
    backend = build_backend(cfg)
    # Finished pairs are reused only if they were rendered with the same backend and params;
    # renders of other params are stale and replaced (DVC's cache keeps earlier versions).
    spec = {"backend": backend.name, **backend.describe()}
    pairs_dir = Path(cfg.paths.data) / "pairs"
    spec_path = pairs_dir / "generation.json"
    if spec_path.exists() and json.loads(spec_path.read_text()) != spec:
        for side in ("schnell", "dev"):
            shutil.rmtree(pairs_dir / side, ignore_errors=True)
    write_json(spec_path, spec)
    # A pair counts as done only when both images exist: the dev image is written last, so a
    # crash between the two writes leaves a schnell image that is simply rendered again.
    todo = prompts[[not pair_paths(cfg, i)[1].exists() for i in prompts["id"]]]
    with progress() as bar:
        task = bar.add_task(f"generate [{backend.name}]", total=len(todo))
        for pair_id, schnell, dev in backend.generate(todo):
            schnell_path, dev_path = pair_paths(cfg, pair_id)
            save_png(schnell_path, schnell)
            save_png(dev_path, dev)
            bar.advance(task)
    manifest = rebuild_manifest(cfg, prompts, backend.name, backend.describe())
    out = Path(cfg.paths.data) / "pairs" / "manifest.parquet"
    write_parquet(out, manifest)
    return {"pairs": len(manifest), "generated": len(todo), "skipped": len(prompts) - len(todo),
            "backend": backend.name, "path": str(out)}
