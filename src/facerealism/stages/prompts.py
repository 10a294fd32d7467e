"""Stage `prompts`: diverse full names -> the paper's portrait prompts, with per-prompt seeds."""

from __future__ import annotations

import hashlib

from pathlib import Path

import numpy as np
import pandas as pd

from facerealism.config import Config
from facerealism.files import write_parquet

# Faker locale -> world region, the grouping the diversity audit reports on.
LOCALE_REGIONS = {
    "en_US": "North America", "en_CA": "North America", "fr_CA": "North America",
    "es_MX": "Latin America", "pt_BR": "Latin America", "es_AR": "Latin America", "es_CO": "Latin America",
    "en_GB": "Europe", "fr_FR": "Europe", "de_DE": "Europe", "es_ES": "Europe", "it_IT": "Europe",
    "pl_PL": "Europe", "nl_NL": "Europe", "sv_SE": "Europe", "el_GR": "Europe", "ru_RU": "Europe",
    "uk_UA": "Europe", "cs_CZ": "Europe", "ro_RO": "Europe", "hu_HU": "Europe",
    "tr_TR": "Middle East", "ar_AA": "Middle East", "ar_SA": "Middle East", "fa_IR": "Middle East",
    "he_IL": "Middle East", "ar_EG": "Africa",
    "hi_IN": "South Asia", "bn_BD": "South Asia", "ne_NP": "South Asia", "ta_IN": "South Asia",
    "ja_JP": "East Asia", "zh_CN": "East Asia", "zh_TW": "East Asia", "ko_KR": "East Asia",
    "vi_VN": "Southeast Asia", "th_TH": "Southeast Asia", "id_ID": "Southeast Asia", "fil_PH": "Southeast Asia",
    "en_NG": "Africa", "sw": "Africa", "zu_ZA": "Africa", "yo_NG": "Africa", "tw_GH": "Africa",
    "en_AU": "Oceania", "en_NZ": "Oceania",
}
# Locales whose names are written family name first, without a space.
_FAMILY_FIRST = {"ja_JP", "zh_CN", "zh_TW", "ko_KR"}

COLUMNS = ["id", "template", "prompt", "name", "gender", "locale", "region", "seed"]


def _full_name(fake, locale: str, gender: str) -> str:
    first = fake.first_name_female() if gender == "female" else fake.first_name_male()
    last = fake.last_name()
    return f"{last}{first}" if locale in _FAMILY_FIRST else f"{first} {last}"


def prompt_seed(global_seed: int, prompt_id: str) -> int:
    """A stable per-prompt generation seed: depends only on the global seed and the prompt id."""
    digest = hashlib.sha256(f"{global_seed}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def faker_names(locales: list[str], n: int, seed: int) -> pd.DataFrame:
    """Sample n (name, gender, locale) rows stratified round-robin over locales and both genders."""
    from faker import Faker
    from faker.config import AVAILABLE_LOCALES

    unknown = [loc for loc in locales if loc not in AVAILABLE_LOCALES]
    if unknown:
        raise ValueError(f"prompts.locales: unknown Faker locale(s) {unknown}")
    unmapped = [loc for loc in locales if loc not in LOCALE_REGIONS]
    if unmapped:
        raise ValueError(f"prompts.locales: no region known for {unmapped}; add them to LOCALE_REGIONS")
    rng = np.random.default_rng(seed)
    # Round-robin over regions first, then over each region's locales, so a region with
    # many Faker locales (Europe) does not dominate; genders alternate within a region.
    by_region: dict[str, list[str]] = {}
    for loc in locales:
        by_region.setdefault(LOCALE_REGIONS[loc], []).append(loc)
    regions = [str(r) for r in rng.permutation(sorted(by_region))]
    fakers = {}
    rows, seen = [], set()
    i = 0
    while len(rows) < n:
        if i > 50 * n:
            raise ValueError(f"prompts: could not draw {n} distinct names from {len(locales)} locales")
        region = regions[i % len(regions)]
        turn = i // len(regions)
        locale = by_region[region][turn // 2 % len(by_region[region])]
        gender = "female" if turn % 2 == 0 else "male"
        i += 1
        if locale not in fakers:
            fakers[locale] = Faker(locale)
            fakers[locale].seed_instance(int(rng.integers(2**31)))
        name = _full_name(fakers[locale], locale, gender)
        if name in seen:
            continue
        seen.add(name)
        rows.append({"name": name, "gender": gender, "locale": locale, "region": region})
    return pd.DataFrame(rows)


def build_prompts(cfg: Config) -> pd.DataFrame:
    """Enriched prompts from sampled names plus name-free baseline prompts."""
    p = cfg.prompts
    names = faker_names(p.locales, p.n_enriched, cfg.seed)
    enriched = names.assign(
        id=[f"e{i:05d}" for i in range(len(names))],
        template="enriched",
        prompt=[p.enriched_template.format(name=n) for n in names["name"]],
    )
    baseline = pd.DataFrame(
        {
            "id": [f"b{i:05d}" for i in range(p.n_baseline)],
            "template": "baseline",
            "prompt": p.baseline_template,
            "name": None,
            "gender": "unspecified",
            "locale": None,
            "region": "unspecified",
        }
    )
    df = pd.concat([enriched, baseline], ignore_index=True)
    df["seed"] = [prompt_seed(cfg.seed, i) for i in df["id"]]
    return df[COLUMNS]


def run(cfg: Config) -> dict:
    df = build_prompts(cfg)
    out = Path(cfg.paths.data) / "prompts.parquet"
    write_parquet(out, df)
    return {"prompts": len(df), "enriched": int((df.template == "enriched").sum()),
            "regions": int(df.loc[df.template == "enriched", "region"].nunique()), "path": str(out)}
