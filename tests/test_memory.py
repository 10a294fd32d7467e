"""Memory that does not grow with the data: the peak-RSS benchmark of train and evaluate at N and k x N pairs."""

from __future__ import annotations

import pytest
import typer

from facerealism.bench import memory

from .conftest import ROOT

# A tiny head and a small evaluate: the benchmark's machinery, not its numbers (those are measured at 400 pairs).
TINY_RUN = ("train.ngf=8", "train.n_blocks=1", "train.ndf=8", "split.holdout_fraction=0.5", "evaluate.bootstrap=10",
            "evaluate.c2st_folds=2", "evaluate.c2st_seeds=1", "evaluate.controls=[RGB noise σ16]")


@pytest.mark.slow  # two projects built and four stage processes started: ~1.5 min on 2 cores
def test_the_benchmark_measures_each_stage_in_its_own_process_at_both_sizes(tmp_path):
    r = memory.measure(16, 4, 32, 3, ROOT / "params.yaml", tmp_path, TINY_RUN)
    assert r["pairs"] == [16, 64] and all(0 < v <= n for v, n in zip(r["validated"], r["pairs"]))
    assert set(r["stages"]) == set(memory.STAGES) == {"train", "evaluate"}
    for stage, s in r["stages"].items():
        small, large = s["peak_bytes"]
        assert small > 100e6 and large > 100e6, (stage, s)  # a process that imported torch: not the parent's number
        assert s["ratio"] == pytest.approx(large / small)
        assert (tmp_path / "pairs64" / f"{stage}.log").exists()
    assert (tmp_path / "pairs64" / "models/head/head.safetensors").exists()
    assert (tmp_path / "pairs64" / "reports/table4.json").exists()  # evaluate ran to its end


def test_the_benchmark_prints_the_table_and_fails_when_a_stage_grows_past_the_ratio(monkeypatch, capsys, tmp_path):
    def measured(pairs, factor, size, steps, params, workdir, extra=()):
        return {"pairs": [pairs, factor * pairs], "validated": [pairs, factor * pairs], "size": size, "steps": steps,
                "stages": {"train": {"peak_bytes": [1.0e9, 1.1e9], "ratio": 1.1},
                           "evaluate": {"peak_bytes": [1.0e9, 1.5e9], "ratio": 1.5}}}

    monkeypatch.setattr(memory, "measure", measured)
    with pytest.raises(typer.Exit) as stop:
        memory.main(pairs=400, factor=8, size=64, steps=20, max_ratio=1.3, params=ROOT / "params.yaml",
                    workdir=tmp_path)
    assert stop.value.exit_code == 1
    out = capsys.readouterr()
    assert "N = 400 pairs" in out.out and "8N = 3200 pairs" in out.out and "1.50" in out.out
    assert "evaluate over 1.3x" in out.err and "train" not in out.err
    memory.main(pairs=400, factor=8, size=64, steps=20, max_ratio=1.6, params=ROOT / "params.yaml", workdir=tmp_path)
