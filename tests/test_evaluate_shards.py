"""Evaluate's features in shards (scoring.shards): the same bits in this process, in shards, and on a Dask cluster of
two processes; the worker count is checked in the config."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from facerealism import cluster, metrics
from facerealism.config import ConfigError, load_config
from facerealism.data.split import ImageFiles
from facerealism.files import save_png
from facerealism.head import enhance_array, load_head
from facerealism.scoring import controls, shards

from .conftest import ROOT
from .test_evaluate import _save_head
from .test_metrics import blur, make_dev

N = 150  # three shards of 64 (the smallest shard), the last one short
SPACES = sorted(metrics.FEATURE_SPACES)


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    """Arrays and their PNG files of N schnell/dev pairs, and a tiny head folder."""
    root = tmp_path_factory.mktemp("shards")
    dev = make_dev(N, seed=5)
    schnell = blur(dev)
    files = {}
    for name, images in (("schnell", schnell), ("dev", dev)):
        paths = [root / name / f"{i:04d}.png" for i in range(N)]
        for path, img in zip(paths, images):
            save_png(path, img)
        files[name] = ImageFiles(paths)
    _save_head(root / "head", "resnet")
    return schnell, dev, files, root / "head"


def rows_and_whole_images(test_split):
    """(label -> recipe reading the files, label -> the row's images made in one call on the whole arrays)."""
    schnell, dev, files, head = test_split
    boost = functools.partial(controls.apply, "detail gain ×1", seed=0)  # a filter of each image alone
    recipes = {"dev": shards.Images(files["dev"]), "schnell": shards.Images(files["schnell"]),
               "head": shards.Headed(str(head), files["schnell"]), "filter": shards.Filtered(boost, files["schnell"]),
               controls.ORACLE: shards.Oracle(files["schnell"], files["dev"])}
    whole = {"dev": dev, "schnell": schnell, "head": enhance_array(load_head(head)[0], schnell),
             "filter": boost(schnell), controls.ORACLE: controls.oracle(schnell, dev)}
    for name in controls.CONTROLS:  # the noise controls resume their stream; the light band reaches its neighbours
        recipes[name] = shards.Controlled(name, 0, files["schnell"], files["dev"])
        whole[name] = controls.apply(name, schnell, 0, dev)
    return recipes, whole


PAIRED = ("head", "filter", controls.ORACLE, "grain on flat regions σ8")  # rows that read no neighbours


def scored(test_split, tmp_path, client=None) -> dict:
    """rows.scored_half of PAIRED on the files in shards of 64, the test pairs doubling as the check half."""
    from facerealism.scoring.rows import scored_half
    from facerealism.scoring.table4 import COLUMNS, Context

    schnell, _, files, _ = test_split
    recipes, _ = rows_and_whole_images(test_split)
    cfg = load_config(ROOT / "params.yaml")
    ctx = Context(cfg, schnell.shape[1:3], tmp_path)
    prepared = {col.key: col.prepare(ctx) for col in COLUMNS}
    return scored_half(cfg, ctx, files["schnell"], files["dev"], files["dev"], {k: recipes[k] for k in PAIRED},
                       files["schnell"], prepared, client, shard=64)


def test_table4_measures_each_pair_in_shards_as_on_the_whole_arrays_and_reads_no_more_than_a_shard(
        test_split, tmp_path, monkeypatch):
    """The gate's paired columns (placement, halo) and the optional ones (SSIM, identity) from shards of 64 images
    are the whole arrays' metrics, bit for bit; no read of the image files spans more than one shard."""
    schnell, dev, _, _ = test_split
    _, whole = rows_and_whole_images(test_split)
    reads = []
    read = ImageFiles.__getitem__
    monkeypatch.setattr(ImageFiles, "__getitem__", lambda self, index: reads.append(len(out := read(self, index))) or out)
    done = scored(test_split, tmp_path)
    assert max(reads) == 64 and sum(reads) > 10 * N  # every row, its inputs and its twins, shard by shard
    for label in PAIRED:
        r, imgs = done[label], whole[label]
        assert metrics.placement_summary(r["placement"], 50, 0) == metrics.placement_gain(schnell, imgs, dev, 50, 0)
        assert metrics.halo_quantile(r["halo"]) == metrics.edge_halo(schnell, imgs)
        assert np.array_equal(r["ssim"], metrics.ssim_pairs(schnell, imgs))
        assert np.array_equal(r["identity"], metrics.identity_pairs(schnell, imgs), equal_nan=True)
    assert metrics.halo_quantile(done["dev (reference)"]["halo"]) == metrics.edge_halo(schnell, dev)
    assert metrics.placement_gain(schnell, whole[controls.ORACLE], dev)["gain"] > 0  # the rows differ from their inputs


def test_sharded_features_are_bit_identical_here_and_on_a_local_cluster_of_two_processes(test_split, monkeypatch,
                                                                                         tmp_path):
    recipes, whole = rows_and_whole_images(test_split)
    expected = {space: {label: metrics.FEATURE_SPACES[space](imgs) for label, imgs in whole.items()}
                for space in SPACES}
    shape = test_split[0].shape
    here = shards.features(recipes, SPACES, shape, client=None, shard=64)
    monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    # on the cluster, each kind of row once (all 17 controls would only add minutes on a loaded 2-core machine)
    kinds = {label: recipes[label] for label in ("dev", "schnell", "head", "filter", controls.ORACLE, "RGB noise σ8",
                                                 "grain on flat regions σ8", "halo: light band above edges",
                                                 "texture pasted from another dev image, skin only")}
    with cluster.client(load_config(ROOT / "params.yaml", ["evaluate.workers=2"]), 2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        on_cluster = shards.features(kinds, SPACES, shape, client=client, shard=64)
        measured = scored(test_split, tmp_path / "cluster", client)  # every measure of Table 4, sent to workers
    here_measured = scored(test_split, tmp_path / "here")
    assert measured.keys() == here_measured.keys()
    for label, by in here_measured.items():
        assert by.keys() == measured[label].keys()
        assert label not in PAIRED or {"placement", "halo", "ssim", "identity", *SPACES} <= set(by)
        for name, value in by.items():
            assert np.array_equal(measured[label][name], value, equal_nan=True), (label, name)
    for space in SPACES:
        for label in whole:
            assert np.array_equal(here[space][label], expected[space][label]), (space, label)
        for label in kinds:
            assert np.array_equal(on_cluster[space][label], expected[space][label]), (space, label)
    # the shards meant something: a control's part from the middle is the whole row's slice, not a fresh start
    part = shards.Controlled("RGB noise σ8", 0, test_split[2]["schnell"], test_split[2]["dev"]).parts(
        shards.bounds(N, 64), shape)[1]
    assert np.array_equal(part(), whole["RGB noise σ8"][64:128])
    assert not np.array_equal(controls.apply("RGB noise σ8", test_split[0][64:128], 0), whole["RGB noise σ8"][64:128])


def test_one_worker_and_no_scheduler_start_no_cluster(monkeypatch):
    monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.evaluate.workers == 1
    with cluster.client(cfg, cfg.evaluate.workers) as client:
        assert client is None
    monkeypatch.setenv(cluster.ADDRESS_ENV, "tcp://scheduler:8786")
    assert cluster.dask_address(cfg) == "tcp://scheduler:8786"  # generate's scheduler serves evaluate too


@pytest.mark.parametrize("count", ["0", "-2", "two"])
def test_a_bad_worker_count_fails_the_config_check_in_one_line(count):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "params.yaml", [f"evaluate.workers={count}"])
    assert "\n" not in str(e.value) and str(e.value).startswith(f"override --set evaluate.workers={count}: "
                                                                "evaluate.workers: ")


def test_a_shard_must_hold_whole_batches():
    with pytest.raises(ValueError, match="multiple of 64"):
        shards.bounds(100, 48)
