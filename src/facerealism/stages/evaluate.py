"""Stage `evaluate`: the paper's Table 4 on the test split — schnell, dev, each trained head and fitted baseline."""

from __future__ import annotations

from pathlib import Path

from facerealism import cluster
from facerealism.config import Config
from facerealism.config.architectures import head_recipe
from facerealism.data import catalog
from facerealism.data.split import ImageFiles, dev_check_half, train_holdout
from facerealism.errors import UserError
from facerealism.files import read_json, write_json
from facerealism.head import enhance_array, load_head
from facerealism.mlops import tracking
from facerealism.report.grids import save_grid
from facerealism.scoring import controls, fitted, shards
from facerealism.scoring.fitted_rows import fitted_filters, fitted_metrics
from facerealism.scoring.photo import PHOTO_RULES, meets_photo_rules, photo_check, photo_limits
from facerealism.scoring.rows import Row, ranking, table4, unavailable_reasons
from facerealism.scoring.table4 import COLUMNS, DEV, SCHNELL, flat_metrics, references


def run(cfg: Config) -> dict:
    from rich.console import Console

    from facerealism.report import html as report

    files = holdout_files(cfg)
    # Each row is a recipe for its images (scoring.shards), made shard by shard from the image files whenever Table 4
    # measures it and never kept: evaluate holds no set of test images whole, only the grid's first k of each row,
    # and the shards (here or on Dask workers) read only their own images, inputs and dev twins.
    k = min(cfg.evaluate.grid_n, len(files["schnell"]))
    schnell_k, dev_k = files["schnell"][:k], files["dev"][:k]
    size = files["schnell"][:1].shape[1]
    inputs, inputs_check = files["schnell"], files["schnell_check"]
    outputs: dict[str, Row] = {}
    outputs_check: dict[str, Row] = {}  # the same rows on the check half: the swapped halves' C2ST scores these
    previews, head_label, run_id = {}, None, None
    for label, folder in head_dirs(cfg):
        G, meta = load_head(folder)
        label = label or head_recipe(meta).label  # what was trained, by name: not just the architecture
        if label in outputs:
            raise UserError(f"two heads share the Table 4 label {label!r}; rename it in evaluate.extra_heads")
        outputs[label] = shards.Headed(str(folder), inputs)
        outputs_check[label] = shards.Headed(str(folder), inputs_check)
        previews[label] = enhance_array(G, schnell_k)
        if head_label is None:  # the first is models/head: its run and the gate's metrics
            head_label, run_id = label, meta.get("mlflow_run_id")
    filters, fitted_params = fitted_filters(cfg, size)  # closed form: seconds to a minute
    for label, f in filters.items():
        outputs[label], outputs_check[label] = shards.Filtered(f, inputs), shards.Filtered(f, inputs_check)
    outputs.update(control_rows(cfg, inputs, files["dev"]))
    outputs_check.update(control_rows(cfg, inputs_check, files["dev_check"]))
    with cluster.client(cfg, cfg.evaluate.workers) as client:  # None: the shards run here, one after another
        table = table4(cfg, files["schnell"], files["dev"], files["dev_check"], outputs,
                       schnell_check=files["schnell_check"], outputs_check=outputs_check, client=client)
    table["head_label"] = head_label
    table["fitted"] = fitted_params
    reports = Path(cfg.paths.reports)
    G = load_head(head_dirs(cfg)[0][1])[0]
    table["photo"] = photo_check(lambda x: enhance_array(G, x), size, reports)
    limits = photo_limits(cfg)
    for label, params in fitted_params.items():  # fitted rows get the photo check too: they could be shipped
        row = table["rows"][label]
        row["photo"] = photo_check(fitted.rebuild(fitted.name_of(label), params), size)
        row["photo_passes"] = meets_photo_rules(row["photo"], limits)
    space = cfg.evaluate.spaces[0]
    table["ranking"] = {"by": f"fd_diff.{space}", "heads": ranking(table, space)}
    flat = flat_metrics(table, head_label)
    flat["holdout_pairs"] = len(files["schnell"])
    flat["best_head"] = table["ranking"]["heads"][0]["head"]
    flat.update({f"photo.{rule.key}": table["photo"][rule.key] for rule in PHOTO_RULES})
    flat.update(fitted_metrics(table))
    write_json(catalog.METRICS.path(cfg), flat)
    write_json(catalog.TABLE4.path(cfg), table)
    grid = save_grid(catalog.BEFORE_AFTER.path(cfg), [schnell_k, *previews.values(), dev_k],
                     ["schnell", *previews, "dev"], scale=4)
    crops = report.save_crops(catalog.CROPS.path(cfg), {"schnell": schnell_k, **previews, "dev": dev_k})
    html = report.write_report(reports)

    console = Console()
    for t in rich_table4(table):
        console.print(t)
    for col, reason in unavailable_reasons(table).items():
        console.print(f"[dim]{col}: unavailable — {reason}[/]", highlight=False)
    if len(previews) > 1:
        console.print(f"best head by {table['ranking']['by']} on the held-out split: [bold]{flat['best_head']}[/]")

    with tracking.run(cfg, "evaluate", run_id=run_id):
        tracking.log_metrics({f"eval.{k}": v for k, v in flat.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)})
        tracking.set_tags({"eval.best_head": flat["best_head"]})  # a tag: a re-evaluation may change it
        for path in (grid, crops, catalog.PHOTO.path(cfg), catalog.METRICS.path(cfg), catalog.TABLE4.path(cfg), html):
            tracking.log_artifact(path, "evaluate")
    return {k: v for k, v in flat.items() if k.startswith(("fd_diff.", "c2st", "fid.available"))}


def holdout_files(cfg: Config) -> dict[str, ImageFiles]:
    """The test split's images halved by hashed id, as files (read on demand): {"schnell", "dev", "dev_check",
    "schnell_check"}.

    The candidates' pairs (schnell, dev) are one half; the other half's dev images are the dev check's independent
    sample, scored against the first half's dev like a candidate (dev judged against itself could never fail).
    Its schnell images are what the placement C2ST sets its dev images beside, and the inputs a candidate is
    scored on when the halves swap roles (the C2ST's spread).
    """
    _, holdout = train_holdout(cfg)
    check = dev_check_half(holdout["id"])
    scored, sample = holdout[~check], holdout[check]
    if len(scored) < 2 or len(sample) < 2:
        raise UserError(f"the test split's halves have {len(scored)} and {len(sample)} pairs; need at least 2 each "
                         f"(raise prompts.n_enriched or split.holdout_fraction)")
    return {"schnell": ImageFiles(scored["schnell_path"]), "dev": ImageFiles(scored["dev_path"]),
            "dev_check": ImageFiles(sample["dev_path"]), "schnell_check": ImageFiles(sample["schnell_path"])}


def control_rows(cfg: Config, inputs: ImageFiles, dev: ImageFiles) -> dict[str, shards.Recipe]:
    """Table 4's control rows on one half's schnell files (`dev`: their twins): each evaluate.controls, the oracle."""
    rows: dict[str, shards.Recipe] = {controls.label(name): shards.Controlled(name, cfg.seed, inputs, dev)
                                      for name in cfg.evaluate.controls}
    rows[controls.ORACLE] = shards.Oracle(inputs, dev)
    return rows


def head_dirs(cfg: Config) -> list[tuple[str | None, Path]]:
    """(Table 4 label, head folder): models/head, the baselines the train stage trained beside it (both labelled
    by the recipe their head.json records: None), then evaluate.extra_heads."""
    heads: list[tuple[str | None, Path]] = [(None, catalog.HEAD.path(cfg))]
    trained = catalog.BASELINES.path(cfg) / catalog.BASELINES_JSON
    if trained.exists():
        heads += [(None, trained.parent / name / catalog.HEAD.name) for name in read_json(trained)["baselines"]]
    for label, folder in cfg.evaluate.extra_heads.items():
        if label in (SCHNELL, DEV, *references(cfg)):
            raise UserError(f"evaluate.extra_heads: label {label!r} is reserved for a reference row")
        heads.append((label, Path(folder)))
    return heads


def rich_table4(table: dict) -> list:
    """Table 4 as rich Tables that fit a terminal: one per feature space (FD with 95 % CIs), then the rest."""
    from rich.table import Table

    def g(v: float, digits: int) -> str:
        return f"{v if abs(v) > 1e-9 else 0.0:.{digits}g}"  # round-off of a set against itself reads as 0

    def ci(r: dict, key: str) -> str:
        lo_hi = r.get(f"{key}_ci")
        return g(r[key], 4) + (f" [{g(lo_hi[0], 3)}, {g(lo_hi[1], 3)}]" if lo_hi else "")

    def opt(c: dict, key: str) -> str:
        return f"{c[key]:.3f}" if c["available"] else "n/a"

    rows, order = table["rows"], table.get("order", list(table["rows"]))
    out = []
    for space in rows[order[0]]["fd"]:
        t = Table(title=f"Table 4 — FD in {space} space, held-out split, {table['n_images']} images "
                        f"(95 % bootstrap CI)")
        t.add_column("row", style="bold", no_wrap=True)
        for col in ("FD_schnell", "FD_dev", "FD_diff (> 0: nearer dev)"):
            t.add_column(col, justify="right")
        for label in order:
            r = rows[label]["fd"][space]
            t.add_row(label, *(ci(r, k) for k in ("fd_schnell", "fd_dev", "fd_diff")))
        out.append(t)
    t = Table(title="Table 4 — C2ST vs dev: held-out accuracy of a classifier telling the row from dev "
                    f"(0.5: indistinguishable); spread: {table.get('c2st_seeds')} fold seeds x "
                    f"{table.get('c2st_halves')} test halves; halo/dev: overshoot beside edges over dev's own")
    t.add_column("row", style="bold", no_wrap=True)
    for col in ("accuracy", "95 % CI", "AUC", "spread", "placement gain [CI]", "halo/dev"):
        t.add_column(col, justify="right")

    def spread(runs: dict | None) -> str:
        return "n/a" if not runs else f"{runs['best']:.3f}–{runs['worst']:.3f}"

    for label in order:
        r = rows[label]
        p, halo = r.get("placement"), r.get("halo_vs_dev")
        t.add_row(label, f"{r['c2st_vs_dev']:.3f}", f"[{r['c2st_ci'][0]:.3f}, {r['c2st_ci'][1]:.3f}]",
                  f"{r['c2st_auc']:.3f}", spread(r.get("c2st_runs")),
                  "n/a" if not p else f"{p['gain']:+.3f} [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]",
                  "n/a" if halo is None else f"{halo:.2f}")
    out.append(t)
    photo = [label for label in order if "photo" in rows[label]]
    if photo:
        t = Table(title="Table 4 — fitted baselines on the photograph (worst size; the head's: reports/photo.png)")
        t.add_column("row", style="bold", no_wrap=True)
        for rule in PHOTO_RULES:
            t.add_column(rule.short, justify="right")
        t.add_column("photo rules", justify="right")
        for label in photo:
            r = rows[label]
            t.add_row(label, *(f"{r['photo'][rule.key]:.3g}" for rule in PHOTO_RULES),
                      "met" if r.get("photo_passes") else "not met")
        out.append(t)
    t = Table(title="Table 4 — input -> output fidelity; FID, FD-DINOv2, CMMD (heads and references)")
    t.add_column("row", style="bold", no_wrap=True)
    shown = [col for col in COLUMNS if col.headline is not None]
    for col in shown:  # the headline cell's header (the HTML report shows every cell)
        t.add_column(next(header for header, key in col.cells if key == col.headline), justify="right")
    for label in [label for label in order if not controls.is_control(label)]:
        t.add_row(label, *(opt(rows[label][col.key], col.headline) for col in shown))
    out.append(t)
    return out
