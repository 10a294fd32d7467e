"""Every artifact the stages pass along, named once: a root in `paths` (data, models, reports) and a relative path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Artifact:
    root: str
    """The `paths` setting it lives under: "data", "models" or "reports"."""
    name: str
    """Its path under that root, as dvc.yaml spells it after the root."""

    def path(self, cfg) -> Path:
        """Where it is for this config (cfg.paths.<root>/<name>)."""
        return Path(getattr(cfg.paths, self.root)) / self.name


# prompts
PROMPTS = Artifact("data", "prompts.parquet")
# generate
PAIRS = Artifact("data", "pairs")
REFERENCE = Artifact("data", "reference")
GENERATE_SAMPLES = Artifact("reports", "generate_samples.png")
# validate
VALIDATED = Artifact("data", "validated.parquet")
QUARANTINE = Artifact("reports", "quarantine.parquet")
VALIDATION_JSON = Artifact("reports", "validation.json")
VALIDATION_MD = Artifact("reports", "validation.md")
# audit
AUDIT_JSON = Artifact("reports", "audit.json")
AUDIT_MD = Artifact("reports", "audit.md")
AUDIT_TSNE = Artifact("reports", "audit_tsne.png")
# train
HEAD = Artifact("models", "head")
BASELINES = Artifact("models", "baselines")
CHECKPOINTS = Artifact("models", "checkpoints")  # not a DVC output (.dvcignore): what train.resume reads
TRAIN_JSON = Artifact("reports", "train.json")
TRAIN_SAMPLES = Artifact("reports", "train_samples.png")
# evaluate
METRICS = Artifact("reports", "metrics.json")
TABLE4 = Artifact("reports", "table4.json")
BEFORE_AFTER = Artifact("reports", "before_after.png")
CROPS = Artifact("reports", "crops.png")
PHOTO = Artifact("reports", "photo.png")
# benchmark
BENCHMARK_JSON = Artifact("reports", "benchmark.json")
FIG8 = Artifact("reports", "fig8_speed.png")
# evaluate and benchmark (report/html.py gathers both stages' outputs)
REPORT_HTML = Artifact("reports", "report.html")
# register
PROMOTION = Artifact("reports", "promotion.json")
# the weekly sweep (flows/sweep.py), outside dvc.yaml
SWEEP_JSON = Artifact("reports", "sweep.json")
# recipe trials on the validation split (`facerealism trial`), outside dvc.yaml: its figures in docs/results.md
TRIALS_JSON = Artifact("reports", "trials.json")
TRIALS_MD = Artifact("reports", "trials.md")
# people's votes on the rating page (`facerealism rate-results`), outside dvc.yaml: the votes live in a database
RATINGS_JSON = Artifact("reports", "ratings.json")

# Inside artifacts: what a folder above holds.
PAIRS_MANIFEST = "manifest.parquet"  # in PAIRS and REFERENCE
BASELINES_JSON = "baselines.json"  # in BASELINES: which baselines belong to the last training
# Not DVC outputs: checkpoints (resume state), the sweep's table, the recipe trials, and report.html, which the pipeline's finish
# step gathers from evaluate's and benchmark's outputs after both ran.
UNTRACKED = (CHECKPOINTS, SWEEP_JSON, TRIALS_JSON, TRIALS_MD, REPORT_HTML, RATINGS_JSON)

ARTIFACTS: dict[str, Artifact] = {k: v for k, v in globals().items() if isinstance(v, Artifact)}
