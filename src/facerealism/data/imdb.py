"""IMDb name.basics.tsv(.gz) -> distinct actor/actress full names with a name gender, for the prompts stage."""

# Format (https://developer.imdb.com/non-commercial-datasets/): tab-separated, one header line,
# no quoting, `\N` for null; columns nconst, primaryName, birthYear, deathYear,
# primaryProfession (comma-separated, e.g. "actress,soundtrack"), knownForTitles.
# Name gender is read off the profession: actress -> female, actor -> male; a name listed under
# both (different people, same name) is ambiguous and dropped. Region: name.basics carries no
# birthplace or nationality (title.akas has regions of titles, not of people), so every IMDb name
# has region "unknown"; guessing it from the name would be exactly the bias the audit measures.

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from facerealism.errors import UserError

REQUIRED = ["nconst", "primaryName", "primaryProfession"]
UNKNOWN_REGION = "unknown"
_CHUNK = 500_000  # rows per read: the full file (~14M people) never sits in memory at once


def _reader(path: Path, **kwargs):
    # QUOTE_NONE: IMDb does not quote, and names contain literal '"' characters.
    return pd.read_csv(path, sep="\t", na_values=["\\N"], keep_default_na=False, quoting=csv.QUOTE_NONE,
                       dtype=str, compression="infer", **kwargs)


def load_actor_names(path: str | Path) -> pd.DataFrame:
    """Distinct actor/actress names from IMDb's name.basics file.

    Args:
        path: name.basics.tsv or name.basics.tsv.gz in IMDb's format.
    Returns:
        DataFrame with columns name, gender ("female"|"male"), region ("unknown"), source_id (nconst),
        one row per distinct name, sorted by name.
    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the missing columns, when the file is not in IMDb's format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts.imdb_path: no such file {path}; download name.basics.tsv.gz from "
                                f"https://datasets.imdbws.com and set prompts.imdb_path")
    try:
        header = list(_reader(path, nrows=0).columns)
    except (UnicodeDecodeError, OSError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"prompts.imdb_path: {path} is not a readable IMDb name.basics TSV "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise UserError(f"prompts.imdb_path: {path} is not IMDb name.basics.tsv: missing column(s) {missing} "
                         f"(found {header[:6]}); expected a tab-separated file with header {REQUIRED + ['...']}")
    parts = []
    for chunk in _reader(path, usecols=REQUIRED, chunksize=_CHUNK):
        jobs = chunk["primaryProfession"].fillna("").str.split(",")
        female = jobs.map(lambda js: "actress" in js)
        male = jobs.map(lambda js: "actor" in js)
        keep = (female ^ male) & chunk["primaryName"].notna()
        parts.append(pd.DataFrame({
            "name": chunk.loc[keep, "primaryName"].str.strip(),
            "gender": female[keep].map({True: "female", False: "male"}),
            "source_id": chunk.loc[keep, "nconst"],
        }))
    people = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["name", "gender", "source_id"])
    people = people[people["name"] != ""]
    # One row per name: a name carried by actresses and actors alike has no single name gender.
    genders = people.groupby("name")["gender"].nunique()
    people = people[people["name"].map(genders) == 1].drop_duplicates("name").sort_values("name")
    return people.assign(region=UNKNOWN_REGION)[["name", "gender", "region", "source_id"]].reset_index(drop=True)
