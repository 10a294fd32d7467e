"""One place for each kind of addition: Table 4's columns, the photo rules, the feature spaces and the presets are each
defined once, and no other module types their names as a list (a list typed twice drifts); the preset registry's own
tests are in test_presets.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from facerealism import presets
from facerealism.metrics.c2st import C2ST_SPACES
from facerealism.metrics.spaces import FEATURE_SPACES
from facerealism.scoring.photo import PHOTO_RULES, photo_damage, photo_limits
from facerealism.scoring.table4 import COLUMN_KEYS, COLUMNS, OPTIONAL_COLUMNS, metric_names

from .conftest import ROOT

SOURCES = [*sorted((ROOT / "src" / "facerealism").rglob("*.py")), *sorted((ROOT / "flows").rglob("*.py"))]
# name set -> (the one module that may spell it as a collection, the module whose dict literals map each name to its
# computation or setting, checked to be exactly the definition's names; None: the definition carries its computation,
# as each Table 4 Column does)
DEFINITIONS = {
    "Table 4 columns": (frozenset(COLUMN_KEYS), "src/facerealism/scoring/table4.py", None),
    "photo rules": (frozenset(rule.key for rule in PHOTO_RULES), "src/facerealism/scoring/photo.py", None),
    "feature spaces": (frozenset(FEATURE_SPACES), "src/facerealism/metrics/spaces.py", None),
    # each preset names itself in its own folder; nothing lists them
    "presets": (frozenset(presets.names()), None, None),
}


def spelled_lists(path: Path, names: frozenset[str], dicts: bool = True) -> list[int]:
    """Lines of `path` where a tuple, list, set (or dict, with `dicts`) literal holds two or more of `names` as string
    constants; `__all__` (names of functions that share a rule's key) is not a list of rules."""
    lines = []
    tree = ast.parse(path.read_text(), str(path))
    exports = {id(n) for a in ast.walk(tree) if isinstance(a, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "__all__" for t in a.targets) for n in ast.walk(a.value)}
    for node in ast.walk(tree):
        if id(node) in exports:
            continue
        items = (node.keys if isinstance(node, ast.Dict) and dicts else
                 node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [])
        hits = {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)} & names
        if len(hits) >= 2:
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("kind", sorted(DEFINITIONS))
def test_no_module_but_the_definition_spells_the_names_as_a_list(kind):
    names, home, computed = DEFINITIONS[kind]
    found = {str(p.relative_to(ROOT)): spelled_lists(p, names, dicts=str(p.relative_to(ROOT)) != computed)
             for p in SOURCES}
    copies = {path: lines for path, lines in found.items() if lines and path != home}
    assert not copies, f"{kind} spelled as a list outside {home}: {copies}"
    assert len(names) >= 2


def test_the_scanner_sees_a_list_typed_twice(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('for col in ("ssim", "lpips"):\n    pass\nx = {"spectral": 1, "random_conv": 2}\n')
    assert spelled_lists(planted, DEFINITIONS["Table 4 columns"][0]) == [1]
    assert spelled_lists(planted, DEFINITIONS["feature spaces"][0]) == [3]


def test_the_gate_names_and_config_choices_follow_the_definitions():
    from facerealism.config import load_config

    cfg = load_config(ROOT / "params.yaml")
    names = metric_names(cfg)
    for col in COLUMNS:
        if col.flat is None:
            assert not any(n.startswith(f"{col.key}.") for n in names)
            continue
        assert {f"{col.key}.available", f"{col.key}.reason"} <= names
        assert {f"{col.key}.{flat}" for _, flat in col.flat} <= names
    assert OPTIONAL_COLUMNS == tuple(c.key for c in COLUMNS if c.flat is not None)
    assert {f"photo.{rule.key}" for rule in PHOTO_RULES} <= names
    assert {f"fd_diff.{space}" for space in cfg.evaluate.spaces} <= names
    assert C2ST_SPACES == tuple(FEATURE_SPACES)
    assert cfg.evaluate.spaces == list(FEATURE_SPACES)  # params.yaml scores every space
    with pytest.raises(Exception, match="unknown feature space"):
        load_config(ROOT / "params.yaml", ["evaluate.spaces=[spectral, not_a_space]"])


def test_every_photo_rule_has_one_ceiling_and_no_ceiling_lacks_a_rule():
    """register.photo_max in params.yaml, and its default (what params files without a base run on), holds exactly
    PHOTO_RULES' keys and ceilings, in their order; photo_limits names a key that drifted."""
    import yaml

    from facerealism.config import RegisterConfig, load_config
    from facerealism.errors import UserError

    keys = [rule.key for rule in PHOTO_RULES]
    assert list(yaml.safe_load((ROOT / "params.yaml").read_text())["register"]["photo_max"]) == keys
    assert RegisterConfig().photo_max == {rule.key: rule.ceiling for rule in PHOTO_RULES}
    assert list(RegisterConfig().photo_max) == keys
    cfg = load_config(ROOT / "params.yaml")
    assert photo_limits(cfg) == cfg.register.photo_max
    renamed = {**{k: v for k, v in cfg.register.photo_max.items() if k != keys[-1]}, f"{keys[-1]}s": 1.0}
    with pytest.raises(UserError, match=rf"register\.photo_max\.{keys[-1]}s: .*did you mean register\.photo_max\."
                                        rf"{keys[-1]}\?"):
        photo_limits(cfg.model_copy(update={"register": cfg.register.model_copy(update={"photo_max": renamed})}))
    dropped = {k: v for k, v in cfg.register.photo_max.items() if k != keys[0]}
    with pytest.raises(UserError, match=rf"register\.photo_max has no ceiling for the photo rule\(s\) {keys[0]}:"):
        photo_limits(cfg.model_copy(update={"register": cfg.register.model_copy(update={"photo_max": dropped})}))


def test_photo_damage_measures_every_rule_and_nothing_else():
    import numpy as np

    x = np.full((1, 32, 32, 3), 128, np.uint8)
    assert list(photo_damage(x, x)) == [rule.key for rule in PHOTO_RULES]
