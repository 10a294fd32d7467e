"""On-demand enhancement as a Prefect flow: a registered head applied to image files or folders."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from facerealism.config import load_config
from facerealism.enhance import enhance_paths, failure
from facerealism.errors import UserError


@flow(name="facerealism-enhance", log_prints=True)
def enhance(inputs: list[str], out: str, model: str = "models:/facerealism-head@champion",
            params: str = "params.yaml", overwrite: bool = False) -> dict:
    # 1. config (for the MLflow store the model URI resolves against) -> 2. enhance every image found -> 3. verdict
    cfg = load_config(params) if Path(params).exists() else None
    done, skipped, bad = enhance_paths([Path(p) for p in inputs], Path(out), model, cfg, overwrite=overwrite)
    for path, reason in bad:
        print(f"skipped {path}: {reason}")
    if why := failure(done, skipped, bad):
        raise UserError(why)
    return {"enhanced": len(done), "skipped_existing": len(skipped), "unreadable": len(bad)}


if __name__ == "__main__":
    import sys

    enhance(inputs=sys.argv[1:-1], out=sys.argv[-1])
