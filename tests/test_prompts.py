"""Stage `prompts`: IMDb name.basics loading, stratified sampling to a target mix, ids (never names) as keys."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from facerealism.config import load_config
from facerealism.data.imdb import load_actor_names
from facerealism.stages import run_stage
from facerealism.stages.prompts import allocate, build_prompts, stratum_counts

from .conftest import ROOT

# IMDb's exact format: tab-separated, a header line, \N for null, comma-separated professions, no quoting.
NAME_BASICS = (
    "nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles\n"
    "nm0000001\tFred Astaire\t1899\t1987\tactor,miscellaneous,producer\ttt0072308,tt0050419\n"
    "nm0000002\tLauren Bacall\t1924\t2014\tactress,soundtrack,archive_footage\ttt0037382,tt0075213\n"
    "nm0000003\tBrigitte Bardot\t1934\t\\N\tactress,music_department,producer\ttt0057345,tt0049189\n"
    "nm0000005\tIngmar Bergman\t1918\t2007\twriter,director,actor\ttt0050986,tt0083922\n"
    "nm0000006\tIngrid Bergman\t1915\t1982\tactress,producer,soundtrack\ttt0034583,tt0038109\n"
    "nm0000009\tRichard Burton\t1925\t1984\tactor,producer,director\ttt0061184,tt0087803\n"
    "nm0000010\tJames Cagney\t1899\t1986\tactor,director,producer\ttt0029870,tt0031867\n"
    "nm0000012\tBette Davis\t1908\t1989\tactress,make_up_department,soundtrack\ttt0031210,tt0035140\n"
    "nm0000019\tFederico Fellini\t1920\t1993\twriter,director,actor\ttt0071129,tt0056801\n"
    "nm0000020\tHenry Fonda\t1905\t1982\tactor,producer,miscellaneous\ttt0050083,tt0032551\n"
    "nm0000023\tSteven Spielberg\t1946\t\\N\tproducer,director,writer\ttt0082971,tt0108052\n"  # not an actor
    "nm0000024\tJohn Doe \"Jr.\"\t\\N\t\\N\tactor\t\\N\n"  # a literal quote, unquoted as IMDb writes it
    "nm0000025\tJohn Doe \"Jr.\"\t\\N\t\\N\tactor\t\\N\n"  # same name, another person: one prompt
    "nm0000026\tAlex Kim\t\\N\t\\N\tactress\t\\N\n"  # listed as actress and as actor: no single name gender
    "nm0000027\tAlex Kim\t\\N\t\\N\tactor\t\\N\n"
    "nm0000028\t\\N\t\\N\t\\N\tactress\t\\N\n"  # no name
    "nm0000029\tGreta Garbo\t1905\t1990\t\\N\t\\N\n"  # no profession
)


@pytest.fixture(params=["tsv", "tsv.gz"])
def name_basics(tmp_path, request) -> Path:
    path = tmp_path / f"name.basics.{request.param}"
    data = NAME_BASICS.encode()
    path.write_bytes(gzip.compress(data) if request.param.endswith("gz") else data)
    return path


def test_imdb_loader_keeps_distinct_actor_and_actress_names(name_basics):
    people = load_actor_names(name_basics)
    assert list(people.columns) == ["name", "gender", "region", "source_id"]
    assert people["name"].is_unique
    by_name = dict(zip(people["name"], people["gender"]))
    assert by_name == {
        "Fred Astaire": "male", "Lauren Bacall": "female", "Brigitte Bardot": "female", "Ingmar Bergman": "male",
        "Ingrid Bergman": "female", "Richard Burton": "male", "James Cagney": "male", "Bette Davis": "female",
        "Federico Fellini": "male", "Henry Fonda": "male", 'John Doe "Jr."': "male",
    }
    assert set(people["region"]) == {"unknown"}  # name.basics has no birthplace or nationality


def test_wrong_format_imdb_file_is_one_line_naming_the_missing_columns(tmp_path):
    csv = tmp_path / "names.csv"
    csv.write_text("nconst,primaryName,primaryProfession\nnm1,Ada,actress\n")  # commas, not tabs
    with pytest.raises(ValueError, match=r"missing column\(s\) \['nconst', 'primaryName', 'primaryProfession'\]"):
        load_actor_names(csv)
    partial = tmp_path / "partial.tsv"
    partial.write_text("nconst\tprimaryName\tbirthYear\nnm1\tAda\t1815\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['primaryProfession'\]") as err:
        load_actor_names(partial)
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="prompts.imdb_path"):
        load_actor_names(tmp_path / "nope.tsv.gz")


def test_imdb_prompts_hit_the_gender_mix_and_keep_names_out_of_ids(name_basics, tmp_path):
    cfg = load_config(ROOT / "params.yaml", [
        "prompts.source=imdb", f"prompts.imdb_path={name_basics}", "prompts.n_enriched=8", "prompts.n_baseline=2",
        f"paths.data={tmp_path}/data"])
    out = run_stage("prompts", cfg)
    df = pd.read_parquet(tmp_path / "data/prompts.parquet")
    enriched = df[df.template == "enriched"]
    assert out["prompts"] == 10 and (enriched["gender"] == "female").sum() == 4  # only 4 actresses exist
    assert enriched["name"].is_unique and set(enriched["region"]) == {"unknown"}
    assert (enriched["prompt"] == "A professional portrait of " + enriched["name"]).all()
    assert df["id"].str.fullmatch(r"[eb]\d{5}").all()  # ids, not names, become file names downstream
    assert df["seed"].is_unique
    pd.testing.assert_frame_equal(build_prompts(cfg).astype(str), df.astype(str))  # reproducible from the seed

    too_many = cfg.model_copy(deep=True)
    too_many.prompts.n_enriched = 10  # needs 5 actresses, the file has 4
    with pytest.raises(ValueError, match="has 4 distinct female names"):
        build_prompts(too_many)
    asks_region = cfg.model_copy(deep=True)
    asks_region.prompts.target_regions = {"Europe": 1.0}
    with pytest.raises(ValueError, match=r"\['Europe'\] not available.*\['unknown'\]"):
        build_prompts(asks_region)
    unset = cfg.model_copy(deep=True)
    unset.prompts.imdb_path = None
    with pytest.raises(ValueError, match="prompts.imdb_path is not set"):
        build_prompts(unset)


def test_faker_prompts_follow_the_target_region_and_gender_mix(tmp_path):
    cfg = load_config(ROOT / "params.yaml", [
        "prompts.n_enriched=40", "prompts.n_baseline=0", "prompts.female_fraction=0.25",
        "prompts.target_regions={Europe: 0.5, East Asia: 0.3, Africa: 0.2}", f"paths.data={tmp_path}/data"])
    df = build_prompts(cfg)
    assert df["region"].value_counts().to_dict() == {"Europe": 20, "East Asia": 12, "Africa": 8}
    assert (df["gender"] == "female").sum() == 10
    assert df["name"].is_unique
    # Europe has 12 Faker locales here: all of them are used, none dominates.
    assert df.loc[df.region == "Europe", "locale"].value_counts().max() <= 2
    # Uniform default: every region of the locales gets a near-equal share.
    uniform = build_prompts(load_config(ROOT / "params.yaml", ["prompts.n_enriched=24", "prompts.n_baseline=0"]))
    assert set(uniform["region"].value_counts()) == {3}


def test_allocation_sums_exactly_and_keeps_both_margins():
    assert allocate(10, {"a": 0.2, "b": 0.8}) == {"a": 2, "b": 8}
    assert sum(allocate(7, {"a": 1, "b": 1, "c": 1}).values()) == 7
    counts = stratum_counts(20, list("ABCDEFGH"), None, 0.5)
    assert sum(counts.values()) == 20
    assert sum(c for (_, g), c in counts.items() if g == "female") == 10
    per_region = {r: sum(c for (rr, _), c in counts.items() if rr == r) for r in "ABCDEFGH"}
    assert set(per_region.values()) == {2, 3}
