"""The held-out split by id: disjoint, complete, near its fraction, stable as pairs are added, the same in every process."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from facerealism.data.split import split

from .conftest import cli_env

IDS = [f"pair{i:04d}" for i in range(2000)]


def held_ids(ids: list[str], fraction: float = 0.2) -> set[str]:
    return set(split(pd.DataFrame({"id": ids, "n": range(len(ids))}), fraction)[1]["id"])


def test_split_is_disjoint_complete_and_near_its_fraction():
    manifest = pd.DataFrame({"id": IDS, "n": range(len(IDS))})
    for fraction in (0.1, 0.2, 0.5):
        train, held = split(manifest, fraction)
        assert set(train["id"]).isdisjoint(held["id"])
        assert sorted([*train["id"], *held["id"]]) == IDS
        assert len(held) / len(IDS) == pytest.approx(fraction, abs=0.03)
        # Rows stay whole: the other columns travel with their id.
        assert (held["n"].map(lambda n: IDS[n]) == held["id"]).all()
    assert held_ids(IDS, 0.0) == set() and held_ids(IDS, 1.0) == set(IDS)


def test_split_depends_on_the_id_only():
    held = held_ids(IDS)
    # Appending pairs (the next generate run) or removing some (quarantine) moves no old pair across the split.
    assert held_ids(IDS + [f"new{i}" for i in range(500)]) & set(IDS) == held
    assert held_ids(IDS[::3]) == held & set(IDS[::3])
    assert held_ids(list(reversed(IDS))) == held
    # A pinned answer: another hash would silently re-split every existing dataset under `dvc repro`.
    assert sorted(held_ids([f"pair{i:03d}" for i in range(40)], 0.25)) == [
        "pair004", "pair022", "pair025", "pair027", "pair030", "pair033"]


def test_split_is_the_same_in_processes_with_other_hash_seeds():
    code = ("import json, sys, pandas as pd; from facerealism.data.split import split; "
            "ids = json.loads(sys.stdin.read()); print(json.dumps(sorted(split(pd.DataFrame({'id': ids}), 0.2)[1]['id'])))")
    expected = sorted(held_ids(IDS))
    for seed in ("1", "2"):
        res = subprocess.run([sys.executable, "-c", code], input=json.dumps(IDS), capture_output=True, text=True,
                             env={**cli_env(), "PYTHONHASHSEED": seed}, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        assert json.loads(res.stdout) == expected, f"PYTHONHASHSEED={seed} split the ids differently"


def test_three_splits_are_disjoint_complete_and_keep_the_two_way_test_split():
    from facerealism.data.split import three_way

    manifest = pd.DataFrame({"id": IDS, "n": range(len(IDS))})
    parts = three_way(manifest, 0.2, 0.1)
    ids = {name: set(rows["id"]) for name, rows in parts.items()}
    assert not (ids["train"] & ids["validation"]) and not (ids["train"] & ids["test"])
    assert not (ids["validation"] & ids["test"])
    assert sorted(ids["train"] | ids["validation"] | ids["test"]) == IDS
    assert len(ids["validation"]) / len(IDS) == pytest.approx(0.1, abs=0.03)
    # Adding a validation split moved no test pair: test is the two-way split's held-out set.
    assert ids["test"] == held_ids(IDS, 0.2)
    # The validation pairs come out of training, and stay put as pairs are added.
    more = three_way(pd.DataFrame({"id": IDS + [f"new{i}" for i in range(300)]}), 0.2, 0.1)
    assert set(more["validation"]["id"]) & set(IDS) == ids["validation"]


def test_split_fractions_must_leave_training_pairs():
    from facerealism.config import load_config
    from facerealism.errors import UserError

    from .conftest import ROOT

    with pytest.raises((UserError, ValueError), match="leaves no training pairs"):
        load_config(ROOT / "params.yaml", ["split.holdout_fraction=0.6", "split.validation_fraction=0.4"])


def test_the_dev_check_halves_the_test_split_evenly_by_id():
    from facerealism.data.split import dev_check_half

    for n in (2, 5, 11, 98):
        ids = pd.Series([f"pair{i:04d}" for i in range(n)])
        check = dev_check_half(ids)
        assert abs(int(check.sum()) - n / 2) <= 0.5  # never an empty half on a small test split
        # By id, not position: the same ids in another order fall in the same halves.
        assert (dev_check_half(ids[::-1]).sort_index() == check).all()
