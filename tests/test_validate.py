"""Validation suite at full scope: every kind of defect lands in quarantine with its reason; the gate; face checks."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facerealism.config import load_config
from facerealism.stages import run_stage
from facerealism.stages.validate import ValidationFailed

from .conftest import ROOT

N_GOOD = 20


def png_bytes(img: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, format=fmt)
    return buf.getvalue()


def make_project(root: Path, images: dict[str, tuple[bytes | None, bytes | None]], backend: str = "synthetic",
                 size: int = 32, stale_sha: tuple[str, ...] = ()) -> None:
    """data/pairs + manifest.parquet as generate writes them; None bytes = the file is absent.

    The manifest's sha256 is that of the bytes written (a generator that produced the defect),
    except for ids in stale_sha, whose files are corrupted after the fact.
    """
    rows = []
    for i, (pair_id, (schnell, dev)) in enumerate(images.items()):
        row = {"id": pair_id, "prompt": f"A professional portrait of Person {i}", "seed": 1000 + i,
               "template": "enriched", "region": "Europe", "gender": "female",
               "width": size, "height": size, "backend": backend, "params": "{}"}
        for side, data in (("schnell", schnell), ("dev", dev)):
            path = root / "data/pairs" / side / f"{pair_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            row[f"{side}_path"] = str(path)
            row[f"{side}_sha256"] = hashlib.sha256(data or b"").hexdigest()
            if data is not None:
                path.write_bytes(data)
        rows.append(row)
    pd.DataFrame(rows).to_parquet(root / "data/pairs/manifest.parquet", index=False)
    for pair_id in stale_sha:
        m = pd.read_parquet(root / "data/pairs/manifest.parquet")
        m.loc[m.id == pair_id, "dev_sha256"] = hashlib.sha256(b"the bytes that were generated").hexdigest()
        m.to_parquet(root / "data/pairs/manifest.parquet", index=False)


def cfg_for(root: Path, *overrides: str):
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    return load_config(root / "params.yaml", ["generate.size=32", f"paths.data={root}/data",
                                              f"paths.reports={root}/reports", *overrides])


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    """20 good synthetic pairs plus one pair per kind of defect; id -> the reason it must be quarantined for."""
    from facerealism.backends.painter import render_pair

    root = tmp_path_factory.mktemp("defects")
    good = {f"g{i:02d}": render_pair(i, 32) for i in range(N_GOOD)}
    images = {k: (png_bytes(s), png_bytes(d)) for k, (s, d) in good.items()}
    s0, d0 = render_pair(100, 32)
    rng = np.random.default_rng(0)
    nan = np.full((32, 32), np.nan, dtype=np.float32)
    bad = {
        "zero_bytes": ((png_bytes(s0), b""), "dev_bytes"),
        "truncated": ((png_bytes(s0), png_bytes(d0)[:60]), "dev_decodes"),
        "jpeg_as_png": ((png_bytes(s0), png_bytes(d0, "JPEG")), "dev_format_matches_extension"),
        "wrong_size": ((png_bytes(s0), png_bytes(render_pair(101, 48)[1])), "dev_width"),
        "grayscale": ((png_bytes(s0), png_bytes(Image.fromarray(d0).convert("L"))), "dev_mode"),
        "rgba": ((png_bytes(s0), png_bytes(Image.fromarray(d0).convert("RGBA"))), "dev_mode"),
        "missing": ((png_bytes(s0), None), "dev_exists"),
        "black": ((png_bytes(s0), png_bytes(np.zeros((32, 32, 3), np.uint8))), "dev_brightness"),
        "blank": ((png_bytes(s0), png_bytes(np.full((32, 32, 3), 128, np.uint8))), "dev_std"),
        "noise": ((png_bytes(s0), png_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))), "dev_sharpness"),
        "nan_frame": ((png_bytes(s0), png_bytes(Image.fromarray(nan), "TIFF")), "dev_finite"),
        "exact_dup": ((png_bytes(render_pair(102, 32)[0]), images["g00"][1]), "dev_duplicate_of"),
        "near_dup": ((png_bytes(render_pair(103, 32)[0]),
                      png_bytes(np.clip(good["g01"][1].astype(int) + rng.integers(-1, 2, (32, 32, 3)), 0, 255)
                                .astype(np.uint8))), "dev_near_duplicate_of"),
    }
    # Distinct renders for the schnell side of defective pairs, so only the intended check fires.
    for j, k in enumerate(bad):
        if k not in ("exact_dup", "near_dup"):
            bad[k] = ((png_bytes(render_pair(200 + j, 32)[0]), bad[k][0][1]), bad[k][1])
    images.update({k: v for k, (v, _) in bad.items()})
    make_project(root, images)
    # A pair whose files are not named after its id, and an image changed after generation.
    m = pd.read_parquet(root / "data/pairs/manifest.parquet")
    m = pd.concat([m, m[m.id == "g02"].assign(id="misnamed")], ignore_index=True)
    m.to_parquet(root / "data/pairs/manifest.parquet", index=False)
    expected = {k: r for k, (_, r) in bad.items()} | {"misnamed": "pair_complete"}
    # A schnell image whose dev partner never got written (generation died mid-pair).
    Image.fromarray(render_pair(300, 32)[0]).save(root / "data/pairs/schnell/orphan.png")
    expected["orphan"] = "orphan: schnell image"
    return root, expected


def test_each_defect_is_quarantined_for_its_reason_and_nothing_is_deleted(defects):
    root, expected = defects
    files_before = sorted(p.name for p in (root / "data/pairs").rglob("*"))
    cfg = cfg_for(root)
    with pytest.raises(ValidationFailed, match=r"validation failed \(see .*validation\.md\): 15/35 pairs quarantined") as e:
        run_stage("validate", cfg)
    assert "\n" not in str(e.value)
    q = pd.read_parquet(root / "reports/quarantine.parquet").set_index("id")
    assert set(q.index) == set(expected), set(q.index) ^ set(expected)
    for pair_id, reason in expected.items():
        assert reason in q.at[pair_id, "reasons"], (pair_id, q.at[pair_id, "reasons"])
    # Readable details ride along: the decoder's complaint, the id of the first copy.
    assert "JPEG data in a .png file" in q.at["jpeg_as_png", "reasons"]
    assert "[g00]" in q.at["exact_dup", "reasons"] and "[g01]" in q.at["near_dup", "reasons"]
    # The first copy of a duplicate stays valid; only later copies are quarantined.
    assert not {f"g{i:02d}" for i in range(N_GOOD)} & set(q.index)
    # Reports survive the failed gate, and nothing was deleted.
    summary = json.loads((root / "reports/validation.json").read_text())
    assert summary["passed"] is False and summary["orphans"] == 1 and summary["face_checked_pairs"] == 0
    md = (root / "reports/validation.md").read_text()
    assert "**FAILED**" in md and "| zero_bytes |" in md and "expect_column_values_to_be_in_set(dev_mode)" in md
    assert sorted(p.name for p in (root / "data/pairs").rglob("*")) == files_before


def test_gate_trips_only_above_its_threshold(tmp_path):
    from facerealism.backends.painter import render_pair

    images = {f"p{i:02d}": tuple(png_bytes(x) for x in render_pair(i, 32)) for i in range(20)}
    images["p05"] = (images["p05"][0], images["p05"][1][:50])  # 1/20 = 5 % broken
    make_project(tmp_path, images)
    out = run_stage("validate", cfg_for(tmp_path, "validate.max_failed_fraction=0.05"))
    assert out["passed"] and out["valid"] == 19 and out["quarantined"] == 1
    assert "p05" not in set(pd.read_parquet(tmp_path / "data/validated.parquet")["id"])
    with pytest.raises(ValidationFailed, match=r"1/20 pairs quarantined \(> 4%\)"):
        run_stage("validate", cfg_for(tmp_path, "validate.max_failed_fraction=0.04"))
    assert "**FAILED**" in (tmp_path / "reports/validation.md").read_text()


def test_unreadable_manifest_is_a_one_line_error(tmp_path):
    (tmp_path / "data/pairs").mkdir(parents=True)
    (tmp_path / "data/pairs/manifest.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match=r"manifest\.parquet: not a readable parquet manifest") as e:
        run_stage("validate", cfg_for(tmp_path))
    assert "\n" not in str(e.value)


def test_wrong_column_type_fails_the_gate(tmp_path):
    from facerealism.backends.painter import render_pair

    make_project(tmp_path, {f"p{i}": tuple(png_bytes(x) for x in render_pair(i, 32)) for i in range(4)})
    m = pd.read_parquet(tmp_path / "data/pairs/manifest.parquet")
    m["seed"] = m["seed"].astype(str)
    m.to_parquet(tmp_path / "data/pairs/manifest.parquet", index=False)
    with pytest.raises(ValidationFailed, match=r"expect_column_values_to_be_in_type_list\(seed\)"):
        run_stage("validate", cfg_for(tmp_path, "validate.max_failed_fraction=1.0"))


# Faces ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos():
    from skimage import data

    astro = data.astronaut()  # (512, 512, 3): one real face
    half = np.asarray(Image.fromarray(astro).resize((256, 256), Image.LANCZOS))
    two = np.full_like(astro, 120)
    two[:256] = np.concatenate([half, half[:, ::-1]], axis=1)  # two astronauts side by side, grey below
    blank = np.full_like(astro, 128)
    return {"astronaut": astro, "two": two, "blank": blank, "coffee": data.coffee()[:400, :400]}


def test_face_check_on_a_photo_a_blank_frame_and_two_faces(photos):
    from facerealism.metrics.dlib_faces import single_face_check

    assert single_face_check(photos["astronaut"]) == (1, None)
    assert single_face_check(photos["blank"]) == (0, "0 faces detected, expected 1")
    assert single_face_check(photos["two"]) == (2, "2 faces detected, expected 1")
    # Without the score floor HOG also reports a weak false positive on the astronaut's suit.
    assert single_face_check(photos["astronaut"], min_score=-0.5)[0] == 2
    # Size/position plausibility: the same face is too small for a 0.3 floor.
    count, issue = single_face_check(photos["astronaut"], min_size=0.3)
    assert count == 1 and issue.startswith("face size 0.18")


def test_cnn_detector_and_descriptors(photos):
    from facerealism.metrics.dlib_faces import descriptor, detect_faces

    faces = detect_faces(photos["astronaut"], detector="cnn", upsample=0)
    assert len(faces) == 1 and 150 < faces[0].left < 200
    hog = detect_faces(photos["two"])
    left, right = sorted(hog, key=lambda f: f.left)
    d_left, d_right = descriptor(photos["two"], left), descriptor(photos["two"], right)
    assert d_left.shape == (128,)
    # The mirrored copy is the same person by dlib's convention (< 0.6), a different photo is far.
    assert np.linalg.norm(d_left - d_right) < 0.6


def test_face_expectations_apply_to_photographic_backends_only(tmp_path, photos):
    from facerealism.backends.painter import render_pair

    astro = photos["astronaut"]
    coffee = np.asarray(Image.fromarray(photos["coffee"]).resize((512, 512)))
    images = {
        # dev re-rendered, not astro + 6 grey levels: at 512 px a copy fails the detail check (near-copies below)
        "one_face": (png_bytes(astro), png_bytes(re_render(astro, sigma=1.0))),  # (at 1.5 HOG finds no face)
        "no_face": (png_bytes(coffee), png_bytes(coffee[:, ::-1].copy())),
        "two_faces": (png_bytes(photos["two"]), png_bytes(photos["two"][:, ::-1].copy())),
    }
    make_project(tmp_path, images, backend="flux", size=512)
    # A synthetic pair in the same manifest: cartoons are not face-checked.
    s, d = render_pair(7, 512)
    m = pd.read_parquet(tmp_path / "data/pairs/manifest.parquet")
    extra = m.iloc[[0]].assign(id="cartoon", backend="synthetic", seed=7, prompt="cartoon")
    for side, img in (("schnell", s), ("dev", d)):
        p = tmp_path / f"data/pairs/{side}/cartoon.png"
        p.write_bytes(png_bytes(img))
        extra[f"{side}_path"], extra[f"{side}_sha256"] = str(p), hashlib.sha256(p.read_bytes()).hexdigest()
    pd.concat([m, extra], ignore_index=True).to_parquet(tmp_path / "data/pairs/manifest.parquet", index=False)
    out = run_stage("validate", cfg_for(tmp_path, "generate.size=512", "validate.max_failed_fraction=1.0"))
    assert out["face_checked_pairs"] == 3
    q = pd.read_parquet(tmp_path / "reports/quarantine.parquet").set_index("id")
    assert set(q.index) == {"no_face", "two_faces"}
    assert "0 faces detected" in q.at["no_face", "reasons"] and "2 faces detected" in q.at["two_faces", "reasons"]
    assert "schnell_faces" in q.at["two_faces", "reasons"] and "dev_faces" in q.at["two_faces", "reasons"]


# dev vs its own schnell image: haze, washed-out contrast, near-copies -----------------------------------------------

def hazy(schnell: np.ndarray) -> np.ndarray:
    """dev = schnell blurred (sigma 1 px): what a too-weak img2img pass returns, softer than its input."""
    from scipy import ndimage

    return ndimage.gaussian_filter(schnell.astype(float), (1.0, 1.0, 0)).round().clip(0, 255).astype(np.uint8)


def washed_out(schnell: np.ndarray) -> np.ndarray:
    """dev = 60 % schnell + 40 % its mean grey: the same detail share at lower contrast."""
    return (0.6 * schnell + 0.4 * schnell.mean()).round().astype(np.uint8)


def near_copy(schnell: np.ndarray, seed: int = 0) -> np.ndarray:
    """dev = schnell +-2 grey levels."""
    noise = np.random.default_rng(seed).integers(-2, 3, schnell.shape)
    return np.clip(schnell.astype(int) + noise, 0, 255).astype(np.uint8)


PLANTED = {"hazy": (hazy, "pair_sharpness_ratio"), "washed_out": (washed_out, "pair_contrast_ratio"),
           "copy": (near_copy, "pair_ssim")}


def test_pair_relation_reads_each_planted_defect_on_its_own_measure():
    from facerealism.backends.painter import render_pair
    from facerealism.quality.pair_stats import pair_relation

    schnell, dev = render_pair(3, 32)
    good = pair_relation(schnell, dev)
    assert good["pair_sharpness_ratio"] > 1 and good["pair_contrast_ratio"] > 0.95 and good["pair_ssim"] < 0.95
    h, w, c = (pair_relation(schnell, f(schnell)) for f in (hazy, washed_out, near_copy))
    assert h["pair_sharpness_ratio"] < 0.2 < 0.95 < w["pair_sharpness_ratio"] < 1.05  # haze is not contrast
    assert w["pair_contrast_ratio"] == pytest.approx(0.6, abs=0.01) and c["pair_ssim"] > 0.99


def test_planted_defects_on_real_photographs_cross_the_default_bounds(photos):
    from facerealism.config.validate import ValidateConfig
    from facerealism.quality.pair_stats import pair_relation

    v = ValidateConfig()
    for name in ("astronaut", "coffee"):
        x = photos[name]
        h, w, c = (pair_relation(x, f(x)) for f in (hazy, washed_out, near_copy))
        # Measured: astronaut 0.08 / 0.60 / 0.989, coffee 0.04 / 0.60 / 0.993 (the copy's margin is the narrow one).
        assert h["pair_sharpness_ratio"] < v.min_sharpness_ratio / 4, (name, h)
        assert w["pair_contrast_ratio"] < v.min_contrast_ratio and w["pair_sharpness_ratio"] > v.min_sharpness_ratio
        assert c["pair_ssim"] > v.max_pair_ssim, (name, c)


# At the paper's 512 px: copies that SSIM misses, and what stands in for a genuine re-render -------------------------

def photo_512(name: str) -> np.ndarray:
    """A real photograph from scikit-image, centre square resized to 512² (grey ones as RGB)."""
    from skimage import data

    x = getattr(data, name)()
    x = np.stack([x] * 3, -1) if x.ndim == 2 else x
    h, w = x.shape[:2]
    s = min(h, w)
    x = x[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.asarray(Image.fromarray(x).resize((512, 512), Image.LANCZOS))


def jpeg_copy(x: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def noisy_copy(x: np.ndarray, sigma: float = 4.0, seed: int = 0) -> np.ndarray:
    return np.clip(x + np.random.default_rng(seed).normal(0, sigma, x.shape), 0, 255).round().astype(np.uint8)


def shifted_copy(x: np.ndarray, px: int = 1) -> np.ndarray:
    return np.roll(x, px, axis=1)


def re_render(x: np.ndarray, sigma: float = 1.5, seed: int = 0) -> np.ndarray:
    """Stands in for img2img: the photograph's composition and tones kept (its sigma-1.5 blur), its detail finer
    than that replaced by a fresh instance with the same amplitude spectrum (random phases), as a diffusion
    re-render draws texture anew. An assumption, not a FLUX output: no FLUX weights exist on this machine."""
    from scipy import ndimage

    phase = np.exp(1j * np.angle(np.fft.fft2(np.random.default_rng(seed).normal(size=x.shape[:2]))))  # real-valued
    out = []
    for c in range(3):
        channel = x[..., c].astype(float)
        low = ndimage.gaussian_filter(channel, sigma)
        out.append(low + np.real(np.fft.ifft2(np.abs(np.fft.fft2(channel - low)) * phase)))
    return np.clip(np.stack(out, -1), 0, 255).round().astype(np.uint8)


COPIES_512 = {"JPEG q90": lambda x: jpeg_copy(x, 90), "JPEG q75": lambda x: jpeg_copy(x, 75),
              "copy + sigma 4 noise": noisy_copy, "1-px shifted copy": shifted_copy}
PHOTOS_512 = ("astronaut", "camera", "coffee", "retina")  # native 512, grey 512, upscaled 400, downscaled 1411


def passes_pair_checks(r: dict, v) -> bool:
    return (r["pair_sharpness_ratio"] >= v.min_sharpness_ratio and r["pair_contrast_ratio"] >= v.min_contrast_ratio
            and r["pair_ssim"] <= v.max_pair_ssim and r["pair_detail_correlation"] <= v.max_pair_detail_correlation)


@pytest.mark.parametrize("name", PHOTOS_512)
def test_at_512_px_each_near_copy_of_a_real_photograph_fails_and_a_re_render_passes(name):
    from facerealism.config.validate import ValidateConfig
    from facerealism.quality.pair_stats import pair_relation

    v, x = ValidateConfig(), photo_512(name)
    assert 512 >= v.detail_correlation_min_size
    for case, copy in COPIES_512.items():
        r = pair_relation(x, copy(x))
        # SSIM alone calls most of these a different image (measured 0.70-0.99); their detail is the photo's own.
        assert r["pair_detail_correlation"] > v.max_pair_detail_correlation + 0.15, (name, case, r)
        assert not passes_pair_checks(r, v), (name, case, r)
    # Measured detail correlation: 0.10-0.27 with sigma 1.5; with sigma 1.0 (more of the photo's own detail kept)
    # up to 0.45 (coffee, upscaled from 400 px: little detail finer than a pixel to draw anew).
    for sigma, seed, margin in ((1.5, 0, 0.25), (1.5, 1, 0.25), (1.0, 0, 0.1)):
        r = pair_relation(x, re_render(x, sigma, seed))
        assert passes_pair_checks(r, v) and r["pair_detail_correlation"] < v.max_pair_detail_correlation - margin, \
            (name, sigma, seed, r)


def test_synthetic_pairs_pass_the_detail_check_from_its_minimum_size_and_would_fail_below_it():
    from facerealism.backends.painter import render_pair
    from facerealism.config.validate import ValidateConfig
    from facerealism.quality.pair_stats import pair_relation

    v = ValidateConfig()
    worst = {size: max(pair_relation(*render_pair(i, size, texture_hint=0.35))["pair_detail_correlation"]
                       for i in range(6)) for size in (32, v.detail_correlation_min_size, 512)}
    # Small synthetic pairs share their face's edges in the fine band: the check applies from 256 px only.
    assert worst[32] > v.max_pair_detail_correlation > worst[v.detail_correlation_min_size] + 0.2, worst
    assert worst[512] < v.max_pair_detail_correlation - 0.3, worst


@pytest.mark.slow  # the validate stage on 512-px photographs: the full layer
def test_at_512_px_the_validate_stage_quarantines_each_near_copy_for_its_detail(tmp_path):
    from facerealism.backends.painter import render_pair

    images = {f"g{i}": tuple(png_bytes(x) for x in render_pair(i, 512, texture_hint=0.35)) for i in range(3)}
    images["re_render"] = tuple(png_bytes(x) for x in (lambda s: (s, re_render(s)))(photo_512("chelsea")))
    for (case, copy), name in zip(COPIES_512.items(), PHOTOS_512):
        x = photo_512(name)
        images[case.replace(" ", "_")] = (png_bytes(x), png_bytes(copy(x)))
    make_project(tmp_path, images, size=512)
    out = run_stage("validate", cfg_for(tmp_path, "generate.size=512", "validate.max_failed_fraction=0.5"))
    assert out["passed"] and out["quarantined"] == 4 and out["pair_checked_pairs"] == 8
    q = pd.read_parquet(tmp_path / "reports/quarantine.parquet").set_index("id")
    assert set(q.index) == {case.replace(" ", "_") for case in COPIES_512}
    for reasons in q["reasons"]:
        assert "expect_column_values_to_be_between(pair_detail_correlation): dev is a near-copy of its schnell " \
               "image: its fine detail is schnell's own (correlation > 0.6)" in reasons


def test_a_few_hazy_washed_out_or_copied_pairs_are_quarantined_for_it(tmp_path):
    from facerealism.backends.painter import render_pair

    images = {f"g{i:02d}": tuple(png_bytes(x) for x in render_pair(i, 32)) for i in range(N_GOOD)}
    for j, (name, (plant, _)) in enumerate(PLANTED.items()):
        s = render_pair(50 + j, 32)[0]
        images[name] = (png_bytes(s), png_bytes(plant(s)))
    make_project(tmp_path, images)
    out = run_stage("validate", cfg_for(tmp_path, "validate.max_failed_fraction=0.2"))
    assert out["passed"] and out["quarantined"] == 3 and out["pair_checked_pairs"] == N_GOOD + 3
    q = pd.read_parquet(tmp_path / "reports/quarantine.parquet").set_index("id")
    assert set(q.index) == set(PLANTED)
    for name, (_, column) in PLANTED.items():
        assert q.at[name, "reasons"] == f"expect_column_values_to_be_between({column}): " + {
            "hazy": "dev is hazy: its high-pass share is below 0.5x its schnell image's",
            "washed_out": "dev is washed out: its pixel std is below 0.8x its schnell image's",
            "copy": "dev is a near-copy of its schnell image (SSIM > 0.985)"}[name]
    summary = json.loads((tmp_path / "reports/validation.json").read_text())
    rel = summary["pair_relations"]
    assert rel["pair_ssim"]["n"] == N_GOOD + 3 and rel["pair_ssim"]["max"] > 0.99  # the copy
    assert rel["pair_sharpness_ratio"]["median"] > 1  # the typical synthetic dev is sharper than its schnell
    assert "dev vs its own schnell image" in (tmp_path / "reports/validation.md").read_text()


@pytest.mark.slow  # the validate stage on 512-px photographs: the full layer
@pytest.mark.parametrize("kind", list(PLANTED))
def test_a_mostly_bad_set_fails_in_one_line_naming_the_set_level_expectation(tmp_path, kind):
    from facerealism.backends.painter import render_pair

    plant, column = PLANTED[kind]
    images = {}
    for i in range(9):
        s, d = render_pair(i, 32)
        images[f"p{i}"] = (png_bytes(s), png_bytes(plant(s) if i < 6 else d))  # 6 of 9 bad
    make_project(tmp_path, images)
    # Even a gate that tolerates every failed pair refuses a set whose median pair is bad.
    with pytest.raises(ValidationFailed, match=rf"expect_column_median_to_be_between\({column}\) = ") as e:
        run_stage("validate", cfg_for(tmp_path, "validate.max_failed_fraction=1.0"))
    assert "\n" not in str(e.value) and f"expect_column_values_to_be_between({column}) x6" in str(e.value)
    # The check belongs to backends whose pairs it fits: listed elsewhere, the same set passes.
    out = run_stage("validate", cfg_for(tmp_path, "validate.max_failed_fraction=1.0",
                                        "validate.pair_check_backends=[flux]"))
    assert out["passed"] and out["pair_checked_pairs"] == 0
