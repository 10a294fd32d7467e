"""What a registered head says about itself: provenance (data version, held-out split, size) and its model card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import yaml

from facerealism.config import Config
from facerealism.config.architectures import head_recipe
from facerealism.data import catalog
from facerealism.files import sha256_file
from facerealism.scoring.gate import is_number


def holdout_fingerprint(cfg: Config) -> str:
    """Hash of the sorted held-out ids: two models' metrics are comparable only when this matches."""
    from facerealism.data.split import train_holdout

    _, holdout = train_holdout(cfg)
    ids = "\n".join(sorted(str(i) for i in holdout["id"]))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def data_version(cfg: Config) -> str:
    """The DVC md5 of data/validated.parquet from dvc.lock when present, else the file's sha256."""
    target = catalog.VALIDATED.path(cfg)
    lock = Path("dvc.lock")
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if Path(out.get("path", "")) == Path("data/validated.parquet") and out.get("md5"):
                    return f"dvc-md5:{out['md5']}"
    if not target.exists():
        raise FileNotFoundError(f"missing input {target}: run the stage that produces it first")
    return f"sha256:{sha256_file(target)[:16]}"


def count_parameters(head_dir: Path) -> int:
    """Parameters in the head's safetensors file, read from its header (no tensors loaded)."""
    from safetensors import safe_open

    from facerealism.head import WEIGHTS

    with safe_open(str(head_dir / WEIGHTS), "pt") as f:
        return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())


TRAINED_WITH = ("seed", "generate", "split", "train")
PAPER_RECIPES = ("esa_cyclegan", "cyclegan")  # the paper's unpaired methods (facerealism.config.architectures.recipe ids)  # the sections of head.json's config that made the head


def model_card(cfg: Config, meta: dict, candidate: dict, provenance: dict) -> str:
    """README-like markdown describing one registered head: what, trained how, scored how, from which data/code.

    How it was trained comes from the head's own record (head.json), never from the config register runs with.
    """
    trained = {k: v for k, v in meta.get("config", {}).items() if k in TRAINED_WITH}
    changes = meta.get("resume_changes") or {}
    resumed = "".join(f"- `{k}`: {was!r} -> {now!r} (changed on resume at step {meta.get('resumed_from_step')})\n"
                      for k, (was, now) in changes.items())
    rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(candidate.items()) if is_number(v))
    prov = "\n".join(f"- **{k}**: `{v}`" for k, v in provenance.items())
    params = provenance.get("parameters")
    r = head_recipe(meta)
    train = trained.get("train", {})
    paper = ("the paper's unpaired method" if r.id in PAPER_RECIPES
             else "this repository's recipe, not the paper's unpaired ESA-CycleGAN")
    terms = ", ".join(meta.get("loss_terms") or []) or "not recorded"
    return f"""# {cfg.register.model_name}: {r.label}

A realism head (arXiv 2505.02255): maps FLUX.1-schnell-like portraits toward FLUX.1-dev-like detail.
**Recipe: {r.label}** (`{r.id}`; {paper}). Output: {meta.get('output_mode', 'not recorded')}. Loss terms: {terms};
lambda_cyc {train.get('lambda_cyc')}, lambda_paired {train.get('lambda_paired')}, lr {train.get('lr')}.
Trained in **{meta.get('precision', 'an unrecorded precision')}** ({meta.get('precision_detection', 'no detection recorded')}).
Architecture `{meta.get('arch')}` {json.dumps(meta.get('kwargs', {}))}{f', {params} parameters' if params else ''};
weights as safetensors (`artifacts/head/head.safetensors`), no pickled objects.

## Use
```python
import mlflow, pandas as pd
m = mlflow.pyfunc.load_model("models:/{cfg.register.model_name}@champion")
out = m.predict(pd.DataFrame({{"image": ["portrait.png"]}}))  # column image: path, bytes or base64 PNG
```
Output: column `image`, base64 PNG of the same size.

## Held-out metrics
Higher `fd_diff.*` means the head moved images toward the dev-like domain.

| metric | value |
|---|---|
{rows}

## Provenance
{prov}

## Training config (from head.json)
{resumed}```yaml
{yaml.safe_dump(trained, sort_keys=False)}```

## Gate (register section when registered)
```yaml
{yaml.safe_dump(cfg.register.model_dump(mode="json"), sort_keys=False)}```
"""


def fitted_card(cfg: Config, name: str, params: dict, candidate: dict, provenance: dict, why: str) -> str:
    """README-like markdown for a fitted filter registered in the head's place: what it is (not a learned head), its
    fitted numbers, why it was registered, how it scored."""
    from facerealism.scoring import fitted

    rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(candidate.items()) if is_number(v))
    prov = "\n".join(f"- **{k}**: `{v}`" for k, v in provenance.items())
    numbers = {k: v for k, v in params.items() if k != "trials"}  # the guard trials are on the evaluate run
    return f"""# {cfg.register.model_name}: fitted filter — {name}

**Not a learned head.** A closed-form filter of {fitted.size(params)} numbers fitted to the training pairs
(`facerealism.scoring.fitted`, Table 4 row `{fitted.label(name)}`), registered in the learned head's place:
{why}
Its numbers travel with it as `artifacts/filter.json`; no network, no pickled objects.

## Use
```python
import mlflow, pandas as pd
m = mlflow.pyfunc.load_model("models:/{cfg.register.model_name}@champion")
out = m.predict(pd.DataFrame({{"image": ["portrait.png"]}}))  # column image: path, bytes or base64 PNG
```
Output: column `image`, base64 PNG of the same size. `facerealism enhance` loads it the same way.

## Held-out metrics
| metric | value |
|---|---|
{rows}

## Provenance
{prov}

## Fitted numbers
```json
{json.dumps(numbers, indent=1)}
```

## Gate (register section when registered)
```yaml
{yaml.safe_dump(cfg.register.model_dump(mode="json"), sort_keys=False)}```
"""
