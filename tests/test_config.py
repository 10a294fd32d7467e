"""Config: params.yaml mirrors the typed config, errors name the key, overrides parse like YAML."""

import pytest

from facerealism.config import STAGE_NAMES, Config, ConfigError, load_config

from .conftest import ROOT


def test_params_yaml_has_one_section_per_stage_and_matches_defaults():
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(STAGE_NAMES) <= set(raw)
    # params.yaml spells out every default, so the file alone describes a run: every key is written in it ...
    assert unwritten_keys(Config(), raw) == []
    # ... with the config class's default value.
    assert load_config(ROOT / "params.yaml").dump() == Config().dump()


def unwritten_keys(section, raw: dict, prefix: str = "") -> list[str]:
    """The keys of a config section (recursively) that a params mapping does not write, as dotted names."""
    from pydantic import BaseModel

    missing = []
    for attr, field in type(section).model_fields.items():
        name, value = field.alias or attr, getattr(section, attr)  # validate_ is written `validate`
        if name not in raw:
            missing.append(prefix + name)
        elif isinstance(value, BaseModel):
            missing += unwritten_keys(value, raw[name] or {}, f"{prefix}{name}.")
    return missing


def test_unwritten_keys_are_found_at_any_depth():
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["register"]["photo_max"], raw["generate"]["diffusers"]["fast_lora"]
    raw["prompts"] = None  # a section written empty: every key of it is unwritten
    prompts = {f"prompts.{k}" for k in type(Config().prompts).model_fields}
    assert set(unwritten_keys(Config(), raw)) == {"generate.diffusers.fast_lora", "register.photo_max",
                                                   *prompts}


def test_paper_params_select_flux_scale_settings():
    cfg = load_config(ROOT / "params.paper.yaml")
    assert cfg.train.lambda_cyc == 2.0 and cfg.train.lr == 1e-4
    assert cfg.generate.size == 512


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"train\.stepz: unknown key"):
        load_config(p)


@pytest.mark.parametrize("override, moved_to", [("train.holdout_fraction=0.3", "split.holdout_fraction"),
                                               ("train.sweep.workers=1", "sweep")])
def test_a_key_that_moved_sections_says_where_it_went(tmp_path, override, moved_to):
    p = tmp_path / "params.yaml"
    p.write_text("seed: 0\n")
    with pytest.raises(ConfigError, match=rf"unknown key \(moved to {moved_to}\)"):
        load_config(p, [override])


def test_bad_value_is_named(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_config(p)


def test_malformed_yaml_and_missing_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_parse_yaml_values():
    cfg = load_config(ROOT / "params.yaml", ["train.steps=7", "benchmark.sizes=[32, 64]", "train.residual_output=false"])
    assert cfg.train.steps == 7 and cfg.benchmark.sizes == [32, 64] and cfg.train.residual_output is False
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(ROOT / "params.yaml", ["train.steps"])
    with pytest.raises(ConfigError, match=r"trian"):
        load_config(ROOT / "params.yaml", ["trian.steps=3"])


def test_cross_field_check():
    with pytest.raises(ConfigError, match="train.crop"):
        load_config(ROOT / "params.yaml", ["generate.size=32", "train.crop=48"])


def test_every_param_dvc_tracks_is_spelled_out_in_params_yaml():
    """`dvc commit`/`repro` fail on a param that only exists as a config default."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for entry in stage.get("params", []):
            for key in entry if isinstance(entry, dict) else [entry]:
                node = params
                for part in str(key).split("."):
                    assert isinstance(node, dict) and part in node, f"dvc.yaml stage {name}: {key} not in params.yaml"
                    node = node[part]


@pytest.mark.parametrize("override, expected", [
    ("train.lr=-1", r"^override --set train\.lr=-1: train\.lr: Input should be greater than 0$"),
    ("train.stepz=3", r"^override --set train\.stepz=3: train\.stepz: unknown key \(did you mean train\.steps\?\)$"),
    ("trian.steps=3", r"^override --set trian\.steps=3: trian: unknown key \(did you mean train\?\)$"),
])
def test_an_override_mistake_is_named_as_the_override_not_the_params_file(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(ROOT / "params.yaml", [override])


def test_an_unknown_key_in_a_file_suggests_the_nearest_known_key_of_its_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("validate:\n  max_pair_sim: 0.9\ntrain:\n  zzz: 1\n")
    with pytest.raises(ConfigError, match=r"params\.yaml: validate\.max_pair_sim: unknown key "
                                          r"\(did you mean validate\.max_pair_ssim\?\) \(\+1 more\)$"):
        load_config(p)
    p.write_text("train:\n  zzz: 1\n")  # nothing close: no guess
    with pytest.raises(ConfigError, match=r"train\.zzz: unknown key$"):
        load_config(p)
