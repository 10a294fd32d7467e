"""Stage `prompts`: diverse full names -> the paper's portrait prompts, with per-prompt seeds."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from facerealism.config import Config
from facerealism.data import catalog
from facerealism.errors import UserError
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


def run(cfg: Config) -> dict:
    df = build_prompts(cfg)
    out = catalog.PROMPTS.path(cfg)
    write_parquet(out, df)
    enriched = df[df.template == "enriched"]
    return {"prompts": len(df), "enriched": len(enriched), "source": cfg.prompts.source,
            "regions": int(enriched["region"].nunique()),
            "female_fraction": round(float((enriched["gender"] == "female").mean()), 3), "path": str(out)}


def _full_name(fake, locale: str, gender: str) -> str:
    first = fake.first_name_female() if gender == "female" else fake.first_name_male()
    last = fake.last_name()
    return f"{last}{first}" if locale in _FAMILY_FIRST else f"{first} {last}"


def stable_seed(key: str) -> int:
    """A 31-bit seed from a string, the same on every machine and Python run (unlike hash())."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def prompt_seed(global_seed: int, prompt_id: str) -> int:
    """A stable per-prompt generation seed: depends only on the global seed and the prompt id."""
    return stable_seed(f"{global_seed}:{prompt_id}")


def allocate(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Split n into integer counts proportional to weights (largest remainder: counts sum to n exactly)."""
    total = sum(weights.values())
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise UserError(f"weights must be >= 0 with a positive sum, got {weights}")
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (counts[k] - exact[k], k))[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def stratum_counts(n: int, regions: list[str], target_regions: dict[str, float] | None,
                   female_fraction: float) -> dict[tuple[str, str], int]:
    """How many enriched prompts each (region, name gender) stratum gets.

    Args:
        n: enriched prompts in all.
        regions: the regions the name source can supply.
        target_regions: region -> share (normalised); None: uniform over `regions`.
        female_fraction: share of female names within each region.
    Returns:
        {(region, gender): count}, counts summing to n.
    """
    if target_regions is None:
        target_regions = {r: 1.0 for r in regions}
    unknown = sorted(set(target_regions) - set(regions))
    if unknown:
        raise UserError(f"prompts.target_regions: {unknown} not available from this name source; "
                         f"available: {sorted(regions)}")
    # Regions first, then each region's female count from the running total, so both margins land
    # on target (within one): splitting each region alone would round every odd count toward one gender.
    counts, done, female_done = {}, 0, 0
    for region, k in sorted(allocate(n, target_regions).items()):
        done += k
        female = min(k, max(0, round(female_fraction * done) - female_done))
        female_done += female
        counts.update({key: c for key, c in (((region, "female"), female), ((region, "male"), k - female)) if c})
    return counts


def faker_names(locales: list[str], n: int, seed: int, target_regions: dict[str, float] | None = None,
                female_fraction: float = 0.5) -> pd.DataFrame:
    """Sample n distinct (name, gender, locale, region) rows to the target region / gender mix.

    Within a region, names cycle over its locales, so a region with many Faker locales (Europe)
    gets no more prompts than its target share, and no locale dominates its region.
    """
    from faker import Faker
    from faker.config import AVAILABLE_LOCALES

    unknown = [loc for loc in locales if loc not in AVAILABLE_LOCALES]
    if unknown:
        raise UserError(f"prompts.locales: unknown Faker locale(s) {unknown}")
    unmapped = [loc for loc in locales if loc not in LOCALE_REGIONS]
    if unmapped:
        raise UserError(f"prompts.locales: no region known for {unmapped}; add them to LOCALE_REGIONS")
    rng = np.random.default_rng(seed)
    by_region: dict[str, list[str]] = {}
    for loc in locales:
        by_region.setdefault(LOCALE_REGIONS[loc], []).append(loc)
    fakers = {}
    rows, seen = [], set()
    cursor = dict.fromkeys(by_region, 0)  # per region, shared by both genders: the locales take turns
    for (region, gender), k in sorted(stratum_counts(n, sorted(by_region), target_regions, female_fraction).items()):
        got, tries = 0, 0
        while got < k:
            tries += 1
            if tries > 50 * k + 100:
                raise UserError(f"prompts: could not draw {k} distinct {gender} names for {region} "
                                 f"from locales {by_region[region]}; add locales or lower prompts.n_enriched")
            locale = by_region[region][cursor[region] % len(by_region[region])]
            cursor[region] += 1
            if locale not in fakers:
                fakers[locale] = Faker(locale)
                fakers[locale].seed_instance(int(rng.integers(2**31)))
            name = _full_name(fakers[locale], locale, gender)
            if name in seen:
                continue
            seen.add(name)
            got += 1
            rows.append({"name": name, "gender": gender, "locale": locale, "region": region})
    # Interleave the strata: any prefix or round-robin shard of the table is itself a mixed sample.
    return pd.DataFrame(rows).iloc[rng.permutation(len(rows))].reset_index(drop=True)


def imdb_names(path: str, n: int, seed: int, target_regions: dict[str, float] | None = None,
               female_fraction: float = 0.5) -> pd.DataFrame:
    """Sample n distinct actor/actress names from IMDb name.basics to the target gender mix (region: unknown)."""
    from facerealism.data.imdb import load_actor_names

    people = load_actor_names(path)
    rng = np.random.default_rng(seed)
    parts = []
    for (region, gender), k in sorted(stratum_counts(n, sorted(people["region"].unique()), target_regions,
                                                     female_fraction).items()):
        pool = people[(people["region"] == region) & (people["gender"] == gender)]
        if len(pool) < k:
            raise UserError(f"prompts: {path} has {len(pool)} distinct {gender} names (region {region}), "
                             f"{k} needed; lower prompts.n_enriched or change prompts.female_fraction")
        parts.append(pool.iloc[np.sort(rng.choice(len(pool), size=k, replace=False))])
    names = pd.concat(parts, ignore_index=True).assign(locale=None)[["name", "gender", "locale", "region"]]
    return names.iloc[rng.permutation(len(names))].reset_index(drop=True)


def build_prompts(cfg: Config) -> pd.DataFrame:
    """Enriched prompts from sampled names plus name-free baseline prompts; names live only in the table,
    never in a file path (ids do)."""
    p = cfg.prompts
    if p.source == "imdb":
        if not p.imdb_path:
            raise UserError("prompts.source is imdb but prompts.imdb_path is not set; point it at name.basics.tsv.gz")
        names = imdb_names(p.imdb_path, p.n_enriched, cfg.seed, p.target_regions, p.female_fraction)
    else:
        names = faker_names(p.locales, p.n_enriched, cfg.seed, p.target_regions, p.female_fraction)
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
