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
from facerealism.scoring.table4 import COLUMN_KEYS, COLUMNS, reference_rows

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
        blocks.append(image_grid(crops, [f"{region}: {label}" for label in rows],
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


# grey: schnell, green: dev, blue: heads, orange: fitted baselines, red: negative controls (the gate must reject them)
def _row_colour(label: str, i: int) -> str:
    if i < 2:
        return ("#999", "#2a7")[i]
    return "#c33" if label.startswith("control: ") else "#e90" if label.startswith("fitted: ") else "#36c"


def metric_bars_pngs(table: dict) -> list[tuple[str, bytes]]:
    """One horizontal bar chart per gate metric: FD_diff per feature space (95 % CIs) and C2ST vs dev.

    Horizontal bars keep Table 4's long row names readable; one figure per metric lets a narrow screen stack them.
    Returns:
        [(title, png bytes)].
    """
    plt = _plt()
    rows = table["rows"]
    labels = table.get("order", list(rows))
    colors = [_row_colour(label, i) for i, label in enumerate(labels)]
    y = np.arange(len(labels))
    height = 0.3 * len(labels) + 1.0

    def chart(title: str, vals: np.ndarray, err, ref: float, xlim=None) -> bytes:
        fig, ax = plt.subplots(figsize=(5.2, height))
        ax.barh(y, vals, xerr=err, capsize=3, color=colors)
        ax.axvline(ref, color="k", lw=0.8, ls="--" if ref else "-")
        ax.set_yticks(y, labels, fontsize=11)
        ax.invert_yaxis()  # Table 4's order, top to bottom
        ax.set_title(title, fontsize=12)
        if xlim:
            ax.set_xlim(*xlim)
        return _png_bytes(fig)

    out = []
    for space in rows[labels[0]]["fd"]:
        vals = np.array([rows[l]["fd"][space]["fd_diff"] for l in labels])
        cis = [rows[l]["fd"][space].get("fd_diff_ci") for l in labels]
        err = None
        if all(cis):
            lo, hi = np.array([c[0] for c in cis]), np.array([c[1] for c in cis])
            # Percentile CIs need not contain the plug-in value; clip so matplotlib gets non-negative lengths.
            err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        out.append((f"FD_diff {space}", chart(f"FD_diff ({space}); > 0: nearer dev", vals, err, 0.0)))
    acc = np.array([rows[l]["c2st_vs_dev"] for l in labels])
    ci = np.array([rows[l].get("c2st_ci", [v, v]) for l, v in zip(labels, acc)])
    err = np.vstack([acc - ci[:, 0], ci[:, 1] - acc]).clip(0, None)
    out.append(("C2ST vs dev", chart("C2ST accuracy vs dev; 0.5: indistinguishable", acc, err, 0.5, (0, 1))))
    return out


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


def _img(data: bytes, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"[{v[0]:.3g}, {v[1]:.3g}]"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    # Wide tables scroll inside their box; the page itself never scrolls sideways.
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _with_ci(value: float, ci) -> str:
    return f"{value:.3g} [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else f"{value:.3g}"


def _gate_verdicts(table: dict, promotion: dict | None) -> dict[str, str]:
    """Row label -> what the promotion gate said about it (register's suite check and the candidate's decision)."""
    out = {}
    for label, r in ((promotion or {}).get("suite", {}).get("rows") or {}).items():
        first = next((x for x in r["reasons"] if x.endswith(": fail")), "")
        out[label] = "passes" if r["passed"] else f"rejected ({first.removesuffix(': fail')})" if first else "rejected"
    for label in table.get("order", []):
        if label.startswith("fitted: "):
            out.setdefault(label, "baseline the head must beat")
    out.setdefault(reference_rows(table)[0], "reference (the input)")
    if promotion and table.get("head_label"):
        out[table["head_label"]] = "promoted" if promotion["promoted"] else "not promoted"
    return out


def _table4_compact(table: dict, promotion: dict | None) -> str:
    """The columns the promotion gate reads: FD_diff with its 95 % CI per feature space, C2ST vs dev and its spread,
    placement gain, halo over dev's, the verdict."""
    rows = table["rows"]
    spaces = list(next(iter(rows.values()))["fd"])
    verdicts = _gate_verdicts(table, promotion)
    header = ["row", *(f"FD_diff {s} [95% CI]" for s in spaces), "C2ST vs dev [95% CI]",
              f"C2ST spread ({table.get('c2st_seeds')} seeds x {table.get('c2st_halves')} halves)",
              "placement gain [95% CI]", "halo / dev's", "gate"]
    out = []
    for label in table.get("order", rows):
        r = rows[label]
        runs, place, halo = r.get("c2st_runs"), r.get("placement"), r.get("halo_vs_dev")
        out.append([label, *(_with_ci(r["fd"][s]["fd_diff"], r["fd"][s].get("fd_diff_ci")) for s in spaces),
                    _with_ci(r["c2st_vs_dev"], r.get("c2st_ci")),
                    f"{runs['best']:.3f}–{runs['worst']:.3f}" if runs else "-",
                    _with_ci(place["gain"], place["ci"]) if place else "-",
                    f"{halo:.2f}" if halo is not None else "-", verdicts.get(label, "-")])
    return _table(header, out)


def _table4_html(table: dict) -> str:
    rows = table["rows"]
    spaces = list(next(iter(rows.values()))["fd"])
    header = ["row"]
    for s in spaces:
        header += [f"FD_schnell {s}", f"FD_dev {s}", f"FD_diff {s}", f"FD_diff 95% CI {s}"]
    header += ["C2ST vs dev", *(header for col in COLUMNS for header, _ in col.cells)]
    out = []
    for label in table.get("order", rows):
        r = rows[label]
        cells: list = [label]
        for s in spaces:
            f = r["fd"][s]
            cells += [f["fd_schnell"], f["fd_dev"], f["fd_diff"], f.get("fd_diff_ci", "-")]
        cells.append(r["c2st_vs_dev"])
        cells += [r[col.key][key] if r.get(col.key, {}).get("available") else "n/a" for col in COLUMNS
                  for _, key in col.cells]
        out.append(cells)
    reasons = {}
    for label, r in rows.items():
        if label == reference_rows(table)[0]:  # its input -> output columns are "not applicable", not missing
            continue
        for col in COLUMN_KEYS:
            if not r[col]["available"]:
                reasons.setdefault(col, r[col]["reason"])
    checked = [label for label in table.get("order", rows) if "photo" in rows[label]]
    # The photo rules' values are the check's numbers (the rest are per-size dicts): read off the check itself.
    keys = [k for k, v in rows[checked[0]]["photo"].items() if isinstance(v, (int, float))] if checked else []
    photo = [[label, *(rows[label]["photo"][k] for k in keys), "met" if rows[label].get("photo_passes") else "not met"]
             for label in checked]
    fitted_photo = ("<h3>Fitted baselines on the photograph (worst size)</h3>" + _table(
        ["row", *keys, "photo rules"], photo)) if photo else ""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.get("notes", []))
    unavailable = "".join(f"<li><b>{c}</b> unavailable: {html.escape(v)}</li>" for c, v in reasons.items())
    return (_table(header, out) + fitted_photo + f"<ul>{notes}</ul><h3>Unavailable columns</h3>"
            f"<ul>{unavailable}</ul>")


def _cost_sentence(bench: dict | None) -> str:
    """Measured cost of schnell + head against dev at the smallest measured size, and the full-size FLOPs model."""
    if not bench:
        return "Cost vs dev: not measured yet (run the benchmark stage)."
    parts = []
    pipes = bench.get("pipelines", {})
    if pipes.get("available"):
        size = min(pipes["by_size"], key=int)
        r = pipes["by_size"][size]
        parts.append(f"schnell + head takes {r['schnell+head']['ms_per_image']:.0f} ms per {size} px image against "
                     f"dev's {r['dev']['ms_per_image']:.0f} ms ({r['cost_reduction_pct_vs_dev']:.0f} % less, measured on "
                     f"{pipes['models']}, {bench.get('device', '?')})")
    model = bench.get("flops_by_size", {})
    if model:
        size = max(model, key=int)
        m = model[size]
        parts.append(f"full-size FLUX.1 at {size} px: {m['schnell4_plus_head_tflop']:.0f} TFLOP against dev's "
                     f"{m['dev50_tflop']:.0f} ({100 * m['schnell4_plus_head_tflop'] / m['dev50_tflop']:.0f} % of dev)")
    return ("Cost vs dev: " + "; ".join(parts) + ".") if parts else "Cost vs dev: not measured."


def _verdict_html(promotion: dict | None, table: dict | None, bench: dict | None, ratings: dict | None) -> str:
    """One sentence on what was promoted and why, the numbers that decided it, and what it costs against dev."""
    if promotion is None:
        head = "<p class='verdict none'><b>No promotion decision yet</b>: the register stage has not run.</p>"
        checks = ""
    else:
        label = (table or {}).get("head_label") or "the head"
        version = f"{promotion['model']} v{promotion['version']}"
        approval = promotion.get("approval")
        if promotion["promoted"]:
            head = (f"<p class='verdict ok'><b>Promoted:</b> {html.escape(version)} ({html.escape(label)}) is "
                    f"@champion: it passed every check of the gate below.</p>")
        else:
            failing = [r.removesuffix(": fail") for r in promotion["reasons"] if r.endswith(": fail")]
            why = failing[0] if failing else (approval or {}).get("reason", "see the checks below")
            head = (f"<p class='verdict no'><b>Not promoted:</b> {html.escape(version)} ({html.escape(label)}) stays "
                    f"challenger; champion: {html.escape(str(promotion.get('champion') or 'none'))}. "
                    f"Deciding: {html.escape(why)}.</p>")
        if promotion.get("outcome"):  # learned head, fitted filter or nothing: what register promoted, and why
            head += (f"<p><b>Decision: {html.escape(promotion['outcome'])}</b> — "
                     f"{html.escape(promotion.get('outcome_why', ''))}</p>")
        if approval:
            head += (f"<p>Human approval: <b>{html.escape(approval['status'])}</b>"
                     + (f" — {html.escape(approval['reason'])}" if approval.get("reason") else "") + "</p>")
        items = "".join(f"<li class='{'fail' if r.endswith(': fail') else 'pass'}'>{html.escape(r)}</li>"
                        for r in promotion["reasons"])
        checks = f"<details><summary>The gate's {len(promotion['reasons'])} checks</summary><ul>{items}</ul></details>"
    numbers = []
    if table and table.get("head_label") in table["rows"]:
        r, rows = table["rows"][table["head_label"]], table["rows"]
        spaces = list(r["fd"])
        numbers.append("FD_diff (> 0: nearer dev than schnell) " + ", ".join(
            f"{s} {_with_ci(r['fd'][s]['fd_diff'], r['fd'][s].get('fd_diff_ci'))}" for s in spaces))
        schnell = rows.get(reference_rows(table)[0])
        numbers.append(f"C2ST vs dev {_with_ci(r['c2st_vs_dev'], r.get('c2st_ci'))}"
                       + (f" (schnell {_with_ci(schnell['c2st_vs_dev'], schnell.get('c2st_ci'))}; 0.5: "
                          f"indistinguishable)" if schnell else ""))
    if ratings:
        c = ratings["comparisons"].get("head_vs_dev", {})
        if c.get("preference") is not None:
            numbers.append(f"people preferred the head over dev in {100 * c['preference']:.0f} % of {c['votes']} votes "
                           f"[{100 * c['ci95'][0]:.0f}, {100 * c['ci95'][1]:.0f}] from {c['raters']} raters")
    numbers.append(_cost_sentence(bench).removesuffix("."))
    return (f"<section class='summary'><h2>Verdict</h2>{head}<ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in numbers) + f"</ul>{checks}</section>")


def _ratings_html(ratings: dict | None) -> str:
    if not ratings:
        return ("<p>No ratings yet: <code>facerealism rate</code> serves the page where people choose which of two "
                "portraits looks real; <code>facerealism rate-results</code> adds up their votes.</p>")
    rows = []
    for name, c in ratings["comparisons"].items():
        rows.append([f"{c['a']} vs {c['b']}", "-" if c["preference"] is None else f"{100 * c['preference']:.0f} %",
                     "-" if c["ci95"] is None else f"[{100 * c['ci95'][0]:.0f}, {100 * c['ci95'][1]:.0f}] %",
                     c["votes"], c["raters"]])
    r = ratings["raters"]
    return (_table(["comparison", "chose the first", "95 % CI (Wilson)", "votes", "raters"], rows)
            + f"<p>{r['counted']} of {r['total']} raters counted; set aside as careless (missed attention checks of dev "
              f"against a degraded copy): {html.escape(', '.join(r['careless']) or 'none')}; not yet checked: "
              f"{len(r['no_attention_answer'])}. Fitted baseline rated: {html.escape(str(ratings.get('fitted')))}.</p>")


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


_CSS = ("body{font-family:system-ui,sans-serif;margin:0 auto;padding:1em;max-width:1400px;color:#222;"
        "overflow-wrap:anywhere}h1{font-size:1.5em}h2{margin-top:1.6em}"
        ".scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:13px;margin:.6em 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;overflow-wrap:normal}"
        "td:first-child,th:first-child,td:last-child{text-align:left}th{background:#eee}"
        "@media (max-width:600px){table{font-size:11px}body{padding:.5em}}"
        "img{max-width:100%;height:auto}img.pixels{image-rendering:pixelated}"
        ".charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));gap:1em}"
        ".summary{border:2px solid #ccc;border-radius:8px;padding:.2em 1em}.verdict{font-size:1.15em}"
        ".ok{color:#185}.no{color:#b22}li.fail{color:#b22}details{margin:.6em 0}summary{cursor:pointer}")


def write_report(reports_dir: str | Path) -> Path:
    """Build reports/report.html from whatever the evaluate, audit, benchmark, register and rating steps wrote.

    Order: the verdict (what was promoted, the deciding numbers, cost vs dev), the gate's columns of Table 4 (the
    rest folded), charts, image grids, people's ratings, diversity, speed.

    Args:
        reports_dir: the reports folder (table4.json, promotion.json, ratings.json, audit.json, benchmark.json, PNGs).

    Returns:
        Path of report.html; images are embedded (base64), so the file stands alone as an MLflow artifact.
    """
    reports = Path(reports_dir)

    def load(artifact) -> dict | None:
        return read_json(reports / artifact.name) if (reports / artifact.name).exists() else None

    table, bench = load(catalog.TABLE4), load(catalog.BENCHMARK_JSON)
    promotion, ratings = load(catalog.PROMOTION), load(catalog.RATINGS_JSON)
    sections = ["<h1>facerealism — evaluation and speed report</h1>", _verdict_html(promotion, table, bench, ratings)]
    if table:
        sections.append(f"<h2>Quality (Table 4) — held-out split, {table['n_images']} images</h2>")
        sections.append("<p>The columns the promotion gate reads. Controls are filters the gate must reject; "
                        "fitted rows are closed-form baselines (least squares, a spectral equaliser) the head must beat: the best "
                        "of them that passes the photo rules.</p>")
        sections.append(_table4_compact(table, promotion))
        sections.append("<details><summary>Every column of Table 4, notes and unavailable columns</summary>"
                        + _table4_html(table) + "</details>")
        sections.append("<div class='charts'>" + "".join(_img(png, title) for title, png in metric_bars_pngs(table))
                        + "</div>")
    else:
        sections.append("<h2>Quality (Table 4)</h2><p>Not run yet: run the evaluate stage.</p>")
    for name, title, rows in ((catalog.BEFORE_AFTER.name, "Before / after", "rows, top to bottom: schnell, "),
                              (catalog.CROPS.name, "Zoomed crops: eyes, skin, hair", "per region, rows: schnell, ")):
        if (reports / name).exists():
            heads = [l for l in (table or {}).get("order", [])[2:] if not l.startswith(("control: ", "fitted: "))]
            caption = html.escape(rows + ", ".join(heads + ["dev"])) if table else ""
            sections.append(f"<h2>{title}</h2><p>{caption}</p>" + _img((reports / name).read_bytes(), name, "pixels"))
    sections.append("<h2>People's judgement: which looks like a real photograph?</h2>" + _ratings_html(ratings))
    if (reports / catalog.AUDIT_JSON.name).exists():
        t1 = read_json(reports / catalog.AUDIT_JSON.name)["table1"]
        sections.append("<h2>Diversity (Table 1) — baseline vs enriched prompts</h2>")
        sections.append(_table(t1["columns"], [[r[c] for c in t1["columns"]] for r in t1["rows"]]))
    if bench:
        sections.append("<h2>Speed (Fig. 8)</h2>")
        if (reports / catalog.FIG8.name).exists():
            sections.append(_img((reports / catalog.FIG8.name).read_bytes(), "Fig. 8"))
        sections.append(_benchmark_html(bench))
    else:
        sections.append("<h2>Speed (Fig. 8)</h2><p>Not run yet: run the benchmark stage.</p>")
    doc = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>facerealism report</title>"
           f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>")
    path = reports / catalog.REPORT_HTML.name
    atomic_write_bytes(path, doc.encode())
    return path
