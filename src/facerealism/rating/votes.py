"""The votes: one row per (campaign, rater, trial) in SQLite or PostgreSQL, and the preference they add up to."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, DateTime, MetaData, String, Table, create_engine, event, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from facerealism.rating.trials import COMPARISONS

_META = MetaData()
# The primary key is what makes a vote idempotent: a double submit, a retried request or a reloaded page after a
# crash inserts nothing new, so a trial never counts twice for one rater.
VOTES = Table(
    "facerealism_votes", _META,
    Column("campaign", String(64), primary_key=True),
    Column("rater", String(64), primary_key=True),
    Column("trial", String(200), primary_key=True),
    Column("comparison", String(64), nullable=False),
    Column("chosen", String(32), nullable=False),
    Column("left_set", String(32), nullable=False),
    Column("right_set", String(32), nullable=False),
    Column("cast_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)


def database_url(url: str) -> str:
    """A relative SQLite path is the project's (resolved against the working directory), like paths.mlflow_uri."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = Path(url[len("sqlite:///"):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return url


class VoteStore:
    """Votes in one SQL database (SQLite by default, PostgreSQL for a team); each vote is committed on its own."""

    def __init__(self, url: str):
        self.engine = create_engine(database_url(url), pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            @event.listens_for(self.engine, "connect")
            def _wal(dbapi_conn, _):  # readers never block the writer; a crash mid-write rolls back on reopen
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
                dbapi_conn.execute("PRAGMA busy_timeout=10000")
        _META.create_all(self.engine)

    def cast(self, campaign: str, rater: str, trial: dict, chosen: str) -> bool:
        """Record one vote. `trial` is an entry of `rater_order` (id, comparison, left, right).

        Returns:
            True when the vote is new; False when this rater had already voted on this trial (kept as first cast).
        """
        row = {"campaign": campaign, "rater": rater, "trial": trial["id"], "comparison": trial["comparison"],
               "chosen": chosen, "left_set": trial["left"], "right_set": trial["right"]}
        insert = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}.get(self.engine.dialect.name)
        if insert is not None:
            with self.engine.begin() as conn:
                return conn.execute(insert(VOTES).values(**row).on_conflict_do_nothing()).rowcount == 1
        try:
            with self.engine.begin() as conn:
                conn.execute(VOTES.insert().values(**row))
            return True
        except IntegrityError:
            return False

    def voted(self, campaign: str, rater: str) -> set[str]:
        """Trial ids this rater has voted on (where a returning rater resumes)."""
        q = select(VOTES.c.trial).where(VOTES.c.campaign == campaign, VOTES.c.rater == rater)
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(q)}

    def votes(self, campaign: str) -> list[dict]:
        q = select(VOTES).where(VOTES.c.campaign == campaign).order_by(VOTES.c.cast_at, VOTES.c.rater, VOTES.c.trial)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]


def preference(votes: list[dict], min_attention: float) -> dict:
    """Each comparison's share of votes for its first set (the candidate) with a 95 % Wilson interval.

    Only raters who answered at least one attention check and got at least `min_attention` of them right count.
    The interval treats votes as independent; with few raters who each vote many times it is too narrow, which is
    why the number of raters is reported beside it.

    Returns:
        {"comparisons": {name: {a, b, preference, ci95, p_value, votes, raters}}, "raters": {...}}.
    """
    from scipy.stats import binomtest

    attention: dict[str, list[bool]] = {}
    for v in votes:
        c = COMPARISONS[v["comparison"]]
        if c.attention:
            attention.setdefault(v["rater"], []).append(v["chosen"] == c.a)
    everyone = sorted({v["rater"] for v in votes})
    counted = {r for r, right in attention.items() if sum(right) / len(right) >= min_attention}
    out = {}
    for name, c in COMPARISONS.items():
        if c.attention:
            continue
        mine = [v for v in votes if v["comparison"] == name and v["rater"] in counted]
        k, n = sum(v["chosen"] == c.a for v in mine), len(mine)
        row = {"a": c.a, "b": c.b, "votes": n, "raters": len({v["rater"] for v in mine}),
               "preference": None, "ci95": None, "p_value": None}
        if n:
            test = binomtest(k, n, 0.5)
            ci = test.proportion_ci(0.95, method="wilson")
            row.update(preference=k / n, ci95=[float(ci.low), float(ci.high)], p_value=float(test.pvalue))
        out[name] = row
    return {"comparisons": out, "min_attention": min_attention,
            "raters": {"total": len(everyone), "counted": len(counted),
                       "careless": sorted(set(attention) - counted),
                       "no_attention_answer": sorted(set(everyone) - set(attention))},
            "attention_accuracy": {r: sum(a) / len(a) for r, a in sorted(attention.items())}}
