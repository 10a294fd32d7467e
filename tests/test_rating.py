"""The rating page's parts: trials and their order, idempotent votes in SQLite and PostgreSQL, the preference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from facerealism.bench import servers
from facerealism.rating.trials import COMPARISONS, DEGRADED, DEV, HEAD, SETS, degrade, rater_order, read_set, write_set
from facerealism.rating.votes import VoteStore, preference

from .test_metrics import blur, make_dev


def rating_set(folder, n: int = 4, attention: int = 2):
    """A rating set of constructed images: dev, schnell (dev blurred), a head halfway between, a fitted stand-in."""
    dev = make_dev(n, seed=3)
    schnell = blur(dev)
    head = ((dev.astype(np.float64) + schnell) / 2).round().astype(np.uint8)
    images = {"head": head, "dev": dev, "schnell": schnell, "fitted": blur(dev, 0.6), "degraded": degrade(dev)}
    ids = [f"p{i:03d}" for i in range(n)]
    return write_set(folder, images, ids, {"campaign": "c-test", "fitted": "fitted: stand-in"}, attention)


def test_a_set_lists_every_comparison_per_prompt_and_attention_checks_on_the_first_prompts(tmp_path):
    items = read_set(rating_set(tmp_path, n=4, attention=2))
    by = {}
    for t in items["trials"]:
        by.setdefault(t["comparison"], []).append(t["prompt"])
    assert by == {"head_vs_dev": ["p000", "p001", "p002", "p003"], "head_vs_schnell": ["p000", "p001", "p002", "p003"],
                  "head_vs_fitted": ["p000", "p001", "p002", "p003"], "attention": ["p000", "p001"]}
    for name in SETS:
        assert len(list((tmp_path / "images" / name).glob("*.png"))) == 4


def test_degraded_images_are_far_from_dev_and_the_mosaic_is_flat_inside_blocks():
    dev = make_dev(2, seed=1)
    bad = degrade(dev, sigma=0.0)
    assert bad.shape == dev.shape and np.ptp(bad[0, :8, :8].astype(int), axis=(0, 1)).max() == 0
    assert np.abs(degrade(dev).astype(int) - dev).mean() > 20


def test_each_rater_has_one_stable_order_and_sides_vary(tmp_path):
    trials = read_set(rating_set(tmp_path, n=8))["trials"]
    a1, a2, b = rater_order(trials, "alice"), rater_order(trials, "alice"), rater_order(trials, "bob")
    assert a1 == a2  # a returning rater sees the same order: resuming is "the first trial not voted on"
    assert [t["id"] for t in a1] != [t["id"] for t in b] and sorted(t["id"] for t in a1) == sorted(t["id"] for t in b)
    firsts = [t["left"] == COMPARISONS[t["comparison"]].a for t in a1]
    assert 0 < sum(firsts) < len(firsts)  # the candidate is not always on the same side
    assert all({t["left"], t["right"]} == {COMPARISONS[t["comparison"]].a, COMPARISONS[t["comparison"]].b} for t in a1)


def vote(comparison: str, rater: str, chosen: str, i: int) -> dict:
    return {"comparison": comparison, "rater": rater, "chosen": chosen, "trial": f"{comparison}/p{i}"}


def test_preference_counts_attentive_raters_only_with_a_wilson_interval():
    votes = [vote("attention", r, DEV, 0) for r in ("alice", "bob")] + [vote("attention", "carl", DEGRADED, 0)]
    votes += [vote("head_vs_dev", "alice", HEAD if i < 7 else DEV, i) for i in range(10)]
    votes += [vote("head_vs_dev", "bob", HEAD if i < 1 else DEV, i) for i in range(2)]
    votes += [vote("head_vs_dev", "carl", HEAD, i) for i in range(10)]  # careless: failed its attention check
    votes += [vote("head_vs_dev", "dora", HEAD, i) for i in range(10)]  # answered no attention check: not counted
    p = preference(votes, min_attention=0.8)
    row = p["comparisons"]["head_vs_dev"]
    assert (row["votes"], row["raters"], row["preference"]) == (12, 2, pytest.approx(8 / 12))
    ci = binomtest(8, 12).proportion_ci(0.95, method="wilson")
    assert row["ci95"] == pytest.approx([ci.low, ci.high]) and row["ci95"][0] < 8 / 12 < row["ci95"][1]
    assert p["raters"] == {"total": 4, "counted": 2, "careless": ["carl"], "no_attention_answer": ["dora"]}
    assert p["comparisons"]["head_vs_schnell"] == {"a": HEAD, "b": "schnell", "votes": 0, "raters": 0,
                                                   "preference": None, "ci95": None, "p_value": None}
    assert "attention" not in p["comparisons"]




@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_vote_counts_once_survives_a_reopen_and_a_rater_resumes(tmp_path, backend):
    url, drop = f"sqlite:///{tmp_path}/ratings.db", None
    if backend == "postgresql":
        try:
            drop = servers.create_postgres_db(prefix="ratings")
        except ConnectionError as e:
            pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not running here: {e}")
        url = drop.replace("postgresql://", "postgresql+psycopg2://", 1)
    try:
        trials = rater_order(read_set(rating_set(tmp_path / "set"))["trials"], "alice")
        store = VoteStore(url)
        assert store.engine.dialect.name == backend
        assert store.cast("c1", "alice", trials[0], trials[0]["left"]) is True
        assert store.cast("c1", "alice", trials[0], trials[0]["right"]) is False  # a double submit: first one kept
        assert store.cast("c1", "alice", trials[1], trials[1]["right"]) is True
        assert store.cast("c2", "alice", trials[0], trials[0]["right"]) is True  # another campaign is another vote
        store.engine.dispose()
        again = VoteStore(url)  # a restarted server (or a crash) loses nothing committed
        assert again.voted("c1", "alice") == {trials[0]["id"], trials[1]["id"]} and again.voted("c1", "bob") == set()
        rows = sorted(again.votes("c1"), key=lambda r: r["trial"])
        expected = sorted([(trials[0], "left"), (trials[1], "right")], key=lambda ts: ts[0]["id"])
        assert [(r["trial"], r["chosen"], r["left_set"], r["right_set"]) for r in rows] == \
            [(t["id"], t[side], t["left"], t["right"]) for t, side in expected]
        again.engine.dispose()
    finally:
        if drop:
            servers.drop_postgres_db(drop)
