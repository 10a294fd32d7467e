"""The command line: bad input ends in one line naming the problem, exit code 1, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import cli_env


def cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facerealism.cli", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(res, *fragments):
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_unknown_stage(project):
    assert_one_line_error(cli("stage", "nope", cwd=project), "unknown stage 'nope'", "prompts")


def test_malformed_params(project):
    (project / "params.yaml").write_text("train:\n  lr: [oops\n")
    assert_one_line_error(cli("stage", "prompts", cwd=project), "params.yaml", "not valid YAML")


def test_unknown_override_key(project):
    assert_one_line_error(cli("stage", "prompts", "--set", "train.nope=1", cwd=project), "train.nope", "unknown key")


def test_missing_input_keeps_outputs(project):
    (project / "reports").mkdir()
    keep = project / "reports" / "audit.json"
    keep.write_text("{}")
    assert_one_line_error(cli("stage", "audit", cwd=project), "data/prompts.parquet", "run the stage")
    assert keep.read_text() == "{}"


def test_enhance_rejects_non_image_and_missing_model(project):
    bad = project / "notes.png"
    bad.write_text("not an image")
    res = cli("enhance", str(bad), "--out", "out", "--model", str(project / "nohead"), cwd=project)
    assert_one_line_error(res, "cannot load model", "nohead")
    assert not (project / "out").exists()
    res = cli("enhance", str(project / "missing.png"), "--out", "out", cwd=project)
    assert_one_line_error(res, "input not found", "missing.png")


def test_enhance_unknown_registered_model(project):
    from PIL import Image

    Image.new("RGB", (32, 32), (120, 90, 60)).save(project / "a.png")
    res = cli("enhance", "a.png", "--out", "out", "--model", "models:/no-such-model@champion", cwd=project)
    assert_one_line_error(res, "no-such-model")
    assert not (project / "out" / "a.png").exists()


@pytest.mark.slow  # subprocesses or servers: the full layer, not the inner loop
def test_data_for_and_rollback_name_what_is_missing(project):
    assert_one_line_error(cli("data-for", "models:/no-such-model/1", cwd=project), "no-such-model")
    assert_one_line_error(cli("data-for", "runs:/abc/head", cwd=project), "models:/NAME/VERSION")
    res = cli("rollback", "1", "--reason", "bad faces", cwd=project)
    assert_one_line_error(res, "cannot roll back facerealism-head to version 1", "not found")


def test_only_the_projects_own_errors_become_one_line_messages():
    """A bare ValueError (from a library, or a bug) keeps its traceback; UserError and ConfigError do not."""
    from facerealism.cli import _errors
    from facerealism.config import ConfigError
    from facerealism.errors import UserError
    from facerealism.stages import run_stage

    caught = _errors()
    assert issubclass(ConfigError, UserError) and issubclass(UserError, ValueError)
    assert any(issubclass(UserError, c) for c in caught) and not any(issubclass(ValueError, c) for c in caught)
    with pytest.raises(UserError, match="unknown stage"):
        run_stage("nope", None)
