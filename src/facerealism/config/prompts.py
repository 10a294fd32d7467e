"""The `prompts` section: how many portrait prompts, from which names, in which mix."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from facerealism.config.base import Section


class PromptsConfig(Section):
    source: Literal["faker", "imdb"] = "faker"
    """faker: offline names across many locales; imdb: actor/actress names from IMDb's name.basics.tsv(.gz)."""
    imdb_path: str | None = None
    """IMDb name.basics.tsv or .tsv.gz (https://datasets.imdbws.com); required when source is imdb."""
    target_regions: dict[str, float] | None = None
    """Region -> share of enriched prompts (normalised); null: uniform over the source's regions.
    IMDb carries no birthplace or nationality, so its names all have region 'unknown'."""
    female_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Share of enriched prompts with a female name (IMDb: actress; Faker: female first name)."""
    n_enriched: int = Field(768, ge=1)
    """Prompts built from a full name: 'A professional portrait of {name}'."""
    n_baseline: int = Field(32, ge=0)
    """Name-free prompts ('A professional business portrait') the paper compares against."""
    enriched_template: str = "A professional portrait of {name}"
    baseline_template: str = "A professional business portrait"
    locales: list[str] = Field(
        default_factory=lambda: [
            "en_US", "en_GB", "fr_FR", "de_DE", "es_ES", "it_IT", "pt_BR", "es_MX", "pl_PL", "ru_RU",
            "tr_TR", "ar_AA", "fa_IR", "hi_IN", "bn_BD", "ja_JP", "zh_CN", "ko_KR", "vi_VN", "th_TH",
            "id_ID", "fil_PH", "en_NG", "sw", "zu_ZA", "nl_NL", "sv_SE", "el_GR", "he_IL", "uk_UA",
        ]
    )
    """Faker locales sampled round-robin; each maps to a world region for the audit."""

    @field_validator("enriched_template")
    @classmethod
    def _has_name_slot(cls, v: str) -> str:
        if "{name}" not in v:
            raise ValueError("must contain the placeholder {name}")
        return v
