"""Per-pair measurements the validation suite checks: file integrity, decoding, pixel statistics, duplicates, faces,
and how dev relates to its own schnell image (haze, washed-out contrast, near-copies)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from facerealism.config import Config
from facerealism.progress import progress

SIDES = ("schnell", "dev")
# Which PIL format each extension promises; a JPEG saved as .png is a mislabelled file.
EXTENSION_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def image_stats(path: str | None, phash_size: int = 16) -> dict:
    """Read, hash and decode one image and measure what the suite checks.

    Unmeasurable values stay None: GX skips nulls, so a file that does not decode fails
    `decodes` alone instead of every downstream check.
    """
    out = {"exists": False, "bytes": None, "file_sha256": None, "decodes": None, "decode_error": None,
           "format_matches_extension": None, "mode": None, "width": None, "height": None, "finite": None,
           "brightness": None, "std": None, "sharpness": None, "phash": None}
    if not path or not Path(path).is_file():
        return out
    data = Path(path).read_bytes()
    out.update(exists=True, bytes=len(data), file_sha256=hashlib.sha256(data).hexdigest())
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt, mode, raw = im.format, im.mode, np.asarray(im)
            rgb = im.convert("RGB")
    except Exception as e:  # PIL raises several unrelated types for bad files
        out.update(decodes=False, decode_error=f"{type(e).__name__}: {e}".splitlines()[0][:200])
        return out
    import imagehash
    from scipy import ndimage

    expected = EXTENSION_FORMATS.get(Path(path).suffix.lower())
    grey = np.asarray(rgb.convert("L"), dtype=np.float64)  # (h, w)
    out.update(
        decodes=True, format_matches_extension=(fmt == expected) if expected else False, mode=mode,
        width=rgb.width, height=rgb.height,
        # Float TIFF/EXR-like payloads can carry NaN/inf; uint8 PNGs are always finite.
        finite=bool(np.isfinite(raw).all()) if raw.dtype.kind == "f" else True,
        brightness=float(grey.mean()), std=float(np.asarray(rgb, dtype=np.float64).std()),
        sharpness=float(ndimage.laplace(grey).var()),
        phash=str(imagehash.phash(rgb, hash_size=phash_size)),
    )
    if expected and fmt != expected:
        out["decode_error"] = f"{fmt} data in a {Path(path).suffix} file"
    return out


def first_copy_of(keys: pd.Series, ids: pd.Series) -> pd.Series:
    """For each row, the id of an earlier row with the same key (None for first copies and missing keys)."""
    first: dict = {}
    out = []
    for key, pair_id in zip(keys, ids):
        if key is None or (isinstance(key, float) and np.isnan(key)):
            out.append(None)
        elif key in first:
            out.append(first[key])
        else:
            first[key] = pair_id
            out.append(None)
    return pd.Series(out, index=keys.index, dtype=object)


def near_duplicate_of(hashes: pd.Series, ids: pd.Series, max_distance: int) -> pd.Series:
    """For each row, the id of an earlier row whose perceptual hash is within max_distance bits."""
    out = pd.Series([None] * len(hashes), index=hashes.index, dtype=object)
    valid = [(i, h) for i, h in enumerate(hashes) if isinstance(h, str)]
    if len(valid) < 2:
        return out
    pos = np.array([i for i, _ in valid])
    bits = np.stack([np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8)) for _, h in valid])  # (n, bits)
    # Row by row, not an (n, n, bits) cube: memory stays O(n * bits) for large datasets.
    for k in range(1, len(valid)):
        earlier = np.flatnonzero((bits[:k] != bits[k]).sum(-1) <= max_distance)
        if earlier.size:
            out.iloc[pos[k]] = ids.iloc[pos[earlier[0]]]
    return out


def face_stats(cfg: Config, path: str) -> dict:
    """Faces in one decodable image: count and why it is not one plausible portrait face."""
    from facerealism.metrics.dlib_faces import single_face_check
    from facerealism.files import load_rgb

    v = cfg.validate_
    count, issue = single_face_check(
        load_rgb(path), detector=v.face_detector, upsample=v.face_upsample, min_score=v.face_min_score,
        min_size=v.face_min_size, max_size=v.face_max_size, margin=v.face_center_margin)
    # Plausibility is only judged on a single face; a count failure already says what is wrong.
    return {"faces": count, "face_plausible": (issue is None) if count == 1 else None, "face_issue": issue}


PAIR_MEASURES = ("pair_sharpness_ratio", "pair_contrast_ratio", "pair_ssim", "pair_detail_correlation")
DETAIL_SIGMA = 1.0  # fine detail: an image minus its Gaussian blur of this sigma (px)
DETAIL_MAX_SHIFT = 2  # px: a copy moved by up to this many pixels still lines up with its original


def highpass_share(grey: np.ndarray) -> float:
    """Variance of the Laplacian over the pixel variance: how much of an image's contrast is fine detail.

    Dividing by the variance makes it blind to contrast, so a washed-out image is not also called blurry.
    """
    from scipy import ndimage

    return float(ndimage.laplace(grey).var() / max(grey.var(), 1e-9))


def detail_correlation(ys: np.ndarray, yd: np.ndarray, max_shift: int = DETAIL_MAX_SHIFT) -> float | None:
    """Correlation of two images' fine detail (luma minus its sigma-1 blur), the best over integer shifts of up to
    max_shift px: whether dev's detail is schnell's own instance.

    A re-render (img2img) draws its fine texture anew, so it correlates weakly with its input's; a JPEG re-encode, a
    copy with noise on top or a copy moved by a pixel keeps the instance. SSIM cannot tell these apart at 512 px:
    a 1-px shifted copy scores 0.70-0.93, below re-renders of smooth photographs (measured: tests/test_validate.py).

    Args:
        ys, yd: (h, w) float luma of the same shape, h and w > 2 * max_shift.
    Returns:
        The largest Pearson correlation in [-1, 1]; None where either image has no detail at all.
    """
    from scipy import ndimage

    bs = ys - ndimage.gaussian_filter(ys, DETAIL_SIGMA)
    bd = yd - ndimage.gaussian_filter(yd, DETAIL_SIGMA)
    m = max_shift
    h, w = bs.shape
    core = bs[m:h - m, m:w - m].ravel()  # (n,)
    core = core - core.mean()
    best = None
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            other = bd[m + dy:h - m + dy, m + dx:w - m + dx].ravel()
            other = other - other.mean()
            norm = np.sqrt((core @ core) * (other @ other))
            if norm > 0:
                c = float(core @ other / norm)
                best = c if best is None else max(best, c)
    return best


def pair_relation(schnell: np.ndarray, dev: np.ndarray) -> dict:
    """How dev relates to its own schnell image: sharper, as contrasty, and not a copy.

    Args:
        schnell, dev: uint8 (h, w, 3) RGB of the same shape, h and w >= 7 (SSIM's window).

    Returns:
        {"pair_sharpness_ratio": dev/schnell high-pass share, "pair_contrast_ratio": dev/schnell pixel std,
         "pair_ssim": SSIM(dev, schnell) of luma, 7x7 window, data range 255,
         "pair_detail_correlation": detail_correlation of their luma} (None where undefined).
        Luma, not colour: per-channel noise on a copy averages out, so copies and repaints sit further apart
        (32 px: a copy +-2 levels >= 0.985 in colour SSIM, a good synthetic pair up to 0.978).
    """
    from skimage.metrics import structural_similarity

    weights = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as PIL's "L"
    s, d = schnell.astype(np.float64), dev.astype(np.float64)
    ys, yd = s @ weights, d @ weights  # (h, w)
    hs, hd = highpass_share(ys), highpass_share(yd)
    return {"pair_sharpness_ratio": hd / hs if hs > 0 else None,
            "pair_contrast_ratio": float(d.std() / s.std()) if s.std() > 0 else None,
            "pair_ssim": float(structural_similarity(ys, yd, data_range=255)),
            "pair_detail_correlation": detail_correlation(ys, yd)}


def pair_checks(row, prompts: pd.DataFrame | None) -> dict:
    """Pair completeness: both images named after the pair id, and the prompt/seed the id was rendered from."""
    issues = []
    for side in SIDES:
        p = getattr(row, f"{side}_path")
        if not isinstance(p, str) or not p:
            issues.append(f"no {side} path")
        elif Path(p).stem != str(row.id):
            issues.append(f"{side} file {Path(p).name} is not named after id {row.id}")
    out = {"pair_complete": not issues, "pair_issue": "; ".join(issues) or None, "prompt_matches": None}
    if prompts is not None:
        src = prompts.get(row.id)
        out["prompt_matches"] = src is not None and src == (row.prompt, int(row.seed))
        if not out["prompt_matches"]:
            out["pair_issue"] = "; ".join(filter(None, [out["pair_issue"], "prompt/seed differ from prompts.parquet"
                                                        if src is not None else "id not in prompts.parquet"]))
    return out


def per_image_table(cfg: Config, manifest: pd.DataFrame, prompts: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per pair: manifest columns plus measured statistics of both images."""
    face_backends = set(cfg.validate_.face_check_backends)
    relation_backends = set(cfg.validate_.pair_check_backends)
    lookup = None if prompts is None else {r.id: (r.prompt, int(r.seed)) for r in prompts.itertuples()}
    from facerealism.files import load_rgb

    rows = []
    with progress() as bar:
        task = bar.add_task("validate: decode + measure", total=len(manifest))
        for row in manifest.itertuples():
            rec = pair_checks(row, lookup)
            for side in SIDES:
                path = getattr(row, f"{side}_path")
                s = image_stats(path, cfg.validate_.phash_size)
                s["sha256_matches"] = None if s["file_sha256"] is None else s["file_sha256"] == getattr(row, f"{side}_sha256")
                s.update(faces=None, face_plausible=None, face_issue=None)
                if row.backend in face_backends and s["decodes"]:
                    s.update(face_stats(cfg, path))
                rec.update({f"{side}_{k}": v for k, v in s.items()})
            rec.update(dict.fromkeys(PAIR_MEASURES))
            shapes = {(rec[f"{side}_height"], rec[f"{side}_width"]) for side in SIDES}
            # Only two decoded images of one shape compare; a broken side already fails its own check.
            if row.backend in relation_backends and rec["schnell_decodes"] and rec["dev_decodes"] and len(shapes) == 1 \
                    and min(next(iter(shapes))) >= 7:
                rec.update(pair_relation(load_rgb(row.schnell_path), load_rgb(row.dev_path)))
            rows.append(rec)
            bar.advance(task)
    stats = pd.DataFrame(rows, index=manifest.index)
    table = pd.concat([manifest.drop(columns=["width", "height"]), stats], axis=1)
    for side in SIDES:
        table[f"{side}_duplicate_of"] = first_copy_of(table[f"{side}_file_sha256"], table["id"])
        table[f"{side}_near_duplicate_of"] = near_duplicate_of(
            table[f"{side}_phash"], table["id"], cfg.validate_.phash_max_distance)
    return table
