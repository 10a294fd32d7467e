"""One self-contained HTML report (reports/report.html) of the evaluate, audit and benchmark outputs, plus its figures."""

from __future__ import annotations

import base64
import html
import io
import textwrap
from pathlib import Path

import numpy as np

from facerealism.data import catalog
from facerealism.errors import UserError
from facerealism.files import atomic_write_bytes, encode_png, read_json
from facerealism.report.grids import image_grid
from facerealism.scoring.table4 import PHOTO_RULES

# Fixed regions as fractions of (top, bottom, left, right). On the synthetic portraits the face centre sits at
# ~0.44 of the height with the eyes just above it and the hair cap above the forehead; on real FLUX portraits
# the framing is similar (head-and-shoulders), so the same fractions land near the same features.
CROP_REGIONS = {
    "eyes": (0.30, 0.50, 0.25, 0.75),
    "skin": (0.50, 0.64, 0.33, 0.49),  # the cheek below the left eye
    "hair": (0.12, 0.30, 0.30, 0.70),
}


def crop_region(images: np.ndarray, region: str) -> np.ndarray:
    """(n, h, w, 3) -> the named CROP_REGIONS window of every image, at least 1 px each way."""
    if region not in CROP_REGIONS:
        raise UserError(f"unknown crop region {region!r}; choose from {sorted(CROP_REGIONS)}")
    _, h, w, _ = images.shape
    t, b, l, r = CROP_REGIONS[region]
    y0, x0 = int(t * h), int(l * w)
    return images[:, y0 : max(int(b * h), y0 + 1), x0 : max(int(r * w), x0 + 1)]


def save_crops(path: str | Path, rows: dict[str, np.ndarray], scale: int | None = None) -> Path:
    """Zoomed eye/skin/hair crops: one grid row per (set, region), nearest-neighbour upscaled.

    Args:
        path: PNG to write.
        rows: label -> (n, h, w, 3) uint8, all the same shape (schnell, heads..., dev).
        scale: upscaling; default makes a crop ~96 px high so single-pixel texture is visible.
    """
    path = Path(path)
    blocks = []
    for region in CROP_REGIONS:  # one grid per region: regions differ in shape
        crops = [crop_region(imgs, region) for imgs in rows.values()]
        blocks.append(image_grid(crops, [f"{region}: {label}"[:11] for label in rows],  # 70 px label margin
                                 scale=scale or max(1, 96 // crops[0].shape[1])))
    width = max(b.shape[1] for b in blocks)
    sheet = np.concatenate([np.pad(b, ((0, 6), (0, width - b.shape[1]), (0, 0)), constant_values=255)
                            for b in blocks])
    atomic_write_bytes(path, encode_png(sheet))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Figures (matplotlib, headless)
# ---------------------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers or in DVC runs
    import matplotlib.pyplot as plt

    return plt


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def metric_bars_png(table: dict) -> bytes:
    """FD_diff per feature space (with 95 % CIs) and C2ST vs dev, one bar per Table 4 row."""
    plt = _plt()
    rows = table["rows"]
    labels = table.get("order", list(rows))
    spaces = list(rows[labels[0]]["fd"])
    fig, axes = plt.subplots(1, len(spaces) + 1, figsize=(5.0 * (len(spaces) + 1), 4.4))
    x = np.arange(len(labels))
    # grey: schnell, green: dev, blue: heads, red: negative controls (filters the gate must reject)
    colors = ["#999", "#2a7", *("#c33" if l.startswith("control: ") else "#36c" for l in labels[2:])]
    for ax, space in zip(axes, spaces):
        vals = np.array([rows[l]["fd"][space]["fd_diff"] for l in labels])
        cis = [rows[l]["fd"][space].get("fd_diff_ci") for l in labels]
        err = None
        if all(cis):
            lo, hi = np.array([c[0] for c in cis]), np.array([c[1] for c in cis])
            # Percentile CIs need not contain the plug-in value; clip so matplotlib gets non-negative lengths.
            err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        ax.bar(x, vals, yerr=err, capsize=4, color=colors)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(f"FD_diff ({space}); > 0: nearer dev")
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax = axes[-1]
    acc = np.array([rows[l]["c2st_vs_dev"] for l in labels])
    ci = np.array([rows[l].get("c2st_ci", [v, v]) for l, v in zip(labels, acc)])
    ax.bar(x, acc, yerr=np.vstack([acc - ci[:, 0], ci[:, 1] - acc]).clip(0, None), capsize=4, color=colors)
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_title("C2ST accuracy vs dev; 0.5: indistinguishable")
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    return _png_bytes(fig)


def fig8_png(bench: dict) -> bytes:
    """Fig. 8 style: measured ms/image per pipeline vs image side (left), FLOPs model (right)."""
    plt = _plt()
    pipes = bench.get("pipelines", {})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    if pipes.get("available"):
        sizes = [int(s) for s in pipes["by_size"]]
        for name, style in (("dev", "o-"), ("schnell", "s-"), ("schnell+head", "^-")):
            ax.plot(sizes, [pipes["by_size"][str(s)][name]["ms_per_image"] for s in sizes], style, label=name)
        ax.set_yscale("log")
        ax.set_title(textwrap.fill(f"measured: {pipes['models']} ({bench.get('device', '?')})", 60), fontsize=8)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "pipeline timings not run:\n" + str(pipes.get("reason", "")), ha="center", va="center",
                wrap=True, fontsize=8)
    ax.set_xlabel("image side (px)")
    ax.set_ylabel("ms / image")
    ax = axes[1]
    model = bench.get("flops_by_size", {})
    if model:
        sizes = sorted(int(s) for s in model)
        for key, label, style in (("dev50_tflop", "dev (50 steps)", "o-"), ("schnell4_tflop", "schnell (4)", "s-"),
                                  ("schnell4_plus_head_tflop", "schnell + head", "^--")):
            ax.plot(sizes, [model[str(s)][key] for s in sizes], style, label=label)
        ax.set_yscale("log")
        ax.legend()
    ax.set_title("FLOPs model, full-size FLUX.1 (no weights)", fontsize=9)
    ax.set_xlabel("image side (px)")
    ax.set_ylabel("TFLOP / image")
    return _png_bytes(fig)


# ---------------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------------


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"[{v[0]:.3g}, {v[1]:.3g}]"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _table4_html(table: dict) -> str:
    rows = table["rows"]
    spaces = list(next(iter(rows.values()))["fd"])
    header = ["row"]
    for s in spaces:
        header += [f"FD_schnell {s}", f"FD_dev {s}", f"FD_diff {s}", f"FD_diff 95% CI {s}"]
    header += ["C2ST vs dev", "SSIM", "LPIPS", "identity (cos)", "FID_schnell", "FID_dev", "FID_diff",
               "FD_diff DINOv2", "CMMD_diff"]
    out = []
    for label in table.get("order", rows):
        r = rows[label]
        cells: list = [label]
        for s in spaces:
            f = r["fd"][s]
            cells += [f["fd_schnell"], f["fd_dev"], f["fd_diff"], f.get("fd_diff_ci", "-")]
        cells.append(r["c2st_vs_dev"])
        for col, key in (("ssim", "mean"), ("lpips", "mean"), ("identity", "mean_cosine")):
            cells.append(r[col][key] if r[col]["available"] else "n/a")
        fid = r["fid"]
        cells += [fid[k] if fid["available"] else "n/a" for k in ("fid_schnell", "fid_dev", "fid_diff")]
        cells += [r[c][k] if r.get(c, {}).get("available") else "n/a" for c, k in (("fd_dinov2", "fd_diff"), ("cmmd", "cmmd_diff"))]
        out.append(cells)
    reasons = {}
    for label, r in rows.items():
        if label == "FLUX.1-schnell":  # its input -> output columns are "not applicable", not missing
            continue
        for col in ("ssim", "lpips", "identity", "fid", "fd_dinov2", "cmmd", "clip_iqa"):
            if not r[col]["available"]:
                reasons.setdefault(col, r[col]["reason"])
    photo = [[label, *(rows[label]["photo"][rule.key] for rule in PHOTO_RULES),
              "met" if rows[label].get("photo_passes") else "not met"]
             for label in table.get("order", rows) if "photo" in rows[label]]
    fitted_photo = ("<h3>Fitted baselines on the photograph (worst size)</h3>" + _table(
        ["row", *(rule.short for rule in PHOTO_RULES), "photo rules"], photo)) if photo else ""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.get("notes", []))
    unavailable = "".join(f"<li><b>{c}</b> unavailable: {html.escape(v)}</li>" for c, v in reasons.items())
    return (_table(header, out) + fitted_photo + f"<ul>{notes}</ul><h3>Unavailable columns</h3>"
            f"<ul>{unavailable}</ul>")


def _benchmark_html(bench: dict) -> str:
    parts = [f"<p>device: {html.escape(str(bench.get('device')))}, threads: {bench.get('threads')}, head: "
             f"{html.escape(str(bench.get('head_arch')))} {html.escape(str(bench.get('head_kwargs')))}</p>"]
    pipes = bench.get("pipelines", {})
    if pipes.get("available"):
        rows = []
        for size, r in sorted(pipes["by_size"].items(), key=lambda kv: int(kv[0])):  # JSON keys sort as text
            flops = bench.get("flops_by_size", {}).get(size, {})
            for name in ("dev", "schnell", "schnell+head"):
                m = r[name]
                rows.append([size, name, m["ms_per_image"], m["images_per_s"], m["peak_memory_mb"],
                             r["cost_reduction_pct_vs_dev"] if name == "schnell+head" else "",
                             flops.get({"dev": "dev50_tflop", "schnell": "schnell4_tflop",
                                        "schnell+head": "schnell4_plus_head_tflop"}[name], "-")])
        parts.append(f"<p>Measured on {html.escape(pipes['models'])}; peak memory: "
                     f"{html.escape(pipes['memory_method'])}. {html.escape(pipes.get('note', ''))}</p>")
        parts.append(_table(["size", "pipeline", "ms/image", "images/s", "peak memory MB",
                             "measured cost reduction vs dev %", "FLOPs model TFLOP (full-size FLUX)"], rows))
    else:
        parts.append(f"<p>Pipeline timings unavailable: {html.escape(str(pipes.get('reason')))}</p>")
    rows = []
    for size, variants in sorted(bench.get("head_speed", {}).items(), key=lambda kv: int(kv[0])):
        for name, m in variants.items():
            if isinstance(m, dict):
                rows.append([size, name, m.get("batch", 1), m["ms_per_image"], m["images_per_s"],
                             m.get("ratio_vs_eager_fp32", "-")])
    parts.append("<h3>Head inference variants (same run)</h3>")
    parts.append(_table(["size", "variant", "batch", "ms/image", "images/s", "× eager fp32"], rows))
    return "".join(parts)


def _decision_html(decision: dict) -> str:
    """What register promoted (learned head, fitted filter or nothing) and why."""
    outcome = decision.get("outcome", "learned head" if decision.get("promoted") else "nothing")
    return (f"<p><b>{html.escape(outcome)}</b>: {html.escape(decision.get('outcome_why', ''))}</p>"
            f"<p>champion: version {html.escape(str(decision.get('champion')))}; every reason: promotion.json</p>")


_CSS = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:12px;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
        "img{max-width:100%;image-rendering:pixelated}")


def write_report(reports_dir: str | Path) -> Path:
    """Build reports/report.html from whatever the evaluate, audit and benchmark stages have written so far.

    Args:
        reports_dir: the reports folder (table4.json, audit.json, benchmark.json, before_after.png, crops.png, fig8_speed.png).

    Returns:
        Path of report.html; images are embedded (base64), so the file stands alone as an MLflow artifact.
    """
    reports = Path(reports_dir)
    sections = ["<h1>facerealism — evaluation and speed report</h1>"]
    if (reports / catalog.TABLE4.name).exists():
        table = read_json(reports / catalog.TABLE4.name)
        sections.append(f"<h2>Quality (Table 4) — held-out split, {table['n_images']} images</h2>")
        sections.append(_table4_html(table))
        sections.append(_img(metric_bars_png(table), "metric bars"))
    else:
        sections.append("<h2>Quality (Table 4)</h2><p>Not run yet: run the evaluate stage.</p>")
    for name, title in ((catalog.BEFORE_AFTER.name, "Before / after (rows: schnell, heads, dev)"),
                        (catalog.CROPS.name, "Zoomed crops: eyes, skin, hair")):
        if (reports / name).exists():
            sections.append(f"<h2>{title}</h2>" + _img((reports / name).read_bytes(), name))
    if (reports / catalog.AUDIT_JSON.name).exists():
        t1 = read_json(reports / catalog.AUDIT_JSON.name)["table1"]
        sections.append("<h2>Diversity (Table 1) — baseline vs enriched prompts</h2>")
        sections.append(_table(t1["columns"], [[r[c] for c in t1["columns"]] for r in t1["rows"]]))
    if (reports / catalog.PROMOTION.name).exists():
        sections.append("<h2>Decision (register)</h2>" + _decision_html(read_json(reports / catalog.PROMOTION.name)))
    if (reports / catalog.BENCHMARK_JSON.name).exists():
        bench = read_json(reports / catalog.BENCHMARK_JSON.name)
        sections.append("<h2>Speed (Fig. 8)</h2>")
        if (reports / catalog.FIG8.name).exists():
            sections.append(_img((reports / catalog.FIG8.name).read_bytes(), "Fig. 8"))
        sections.append(_benchmark_html(bench))
    else:
        sections.append("<h2>Speed (Fig. 8)</h2><p>Not run yet: run the benchmark stage.</p>")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>facerealism report</title>"
           f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>")
    path = reports / catalog.REPORT_HTML.name
    atomic_write_bytes(path, doc.encode())
    return path
