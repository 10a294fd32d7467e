"""The pipeline's DAG as dvc.yaml declares it: DVC decides which stages are up to date and records the ones that ran."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from facerealism.config import STAGE_NAMES
from facerealism.errors import UserError
from facerealism.scoring.table4 import table4_rows

# Stages that time themselves: sharing the CPUs with another stage would put the neighbour's load into Fig. 8 and
# into the gate's throughput floor, so on a small machine they run alone (see `Plan.wait_for`).
TIMED = ("benchmark",)
# Below this many CPUs a timed stage waits for its independent neighbours (2 cores here: the benchmark's
# images/s dropped with evaluate running beside it).
TIMED_ALONE_BELOW_CPUS = 8

# DVC's Repo is not thread-safe and its commit takes a file lock: one DVC call at a time in this process.
_DVC = threading.Lock()


def _source_root() -> Path:
    """The checkout this code runs from (holds the dvc.yaml that describes the stages)."""
    return Path(__file__).resolve().parents[3]


def stage_graph(project: str | Path = ".") -> dict[str, list[str]]:
    """{stage: [stages whose outputs it reads]} from dvc.yaml's deps and outs, as DVC's index links them.

    Reads the project's dvc.yaml, or the one beside this source when the project has none (a plain folder).
    """
    from dvc.repo import Repo

    root = Path(project) if (Path(project) / "dvc.yaml").is_file() else _source_root()
    if not (root / "dvc.yaml").is_file():
        raise FileNotFoundError(f"no dvc.yaml in {Path(project).resolve()} or {root}: the stage graph is undefined")
    with _DVC, Repo(str(root), uninitialized=True) as repo:
        graph = repo.index.graph
        upstream = {s.name: sorted(d.name for d in graph.successors(s)) for s in graph.nodes}
    unknown = sorted(set(upstream) - set(STAGE_NAMES))
    if unknown:
        raise UserError(f"{root / 'dvc.yaml'} has stages {unknown} that facerealism does not know; "
                         f"stages: {', '.join(STAGE_NAMES)}")
    return {name: upstream.get(name, []) for name in STAGE_NAMES if name in upstream}


def ancestors(graph: dict[str, list[str]], name: str) -> set[str]:
    todo, seen = list(graph[name]), set()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(graph[n])
    return seen


@dataclass
class Plan:
    """What one run does: the graph, whether DVC may skip and record stages, and what was decided per stage."""

    project: Path
    graph: dict[str, list[str]]
    incremental: bool  # DVC decides up-to-date stages and records finished ones in dvc.lock
    reason: str  # why not incremental ("" when it is)
    force: bool = False
    timed_alone: bool = True
    ran: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)

    def wait_for(self, name: str) -> list[str]:
        """Stages `name` starts after: its upstream ones, and for a timed stage on a small machine also every
        earlier stage it does not depend on (so nothing shares the CPUs while it measures)."""
        deps = list(self.graph[name])
        if self.timed_alone and name in TIMED:
            order, before = list(self.graph), ancestors(self.graph, name)
            deps += [n for n in order[:order.index(name)]
                     if n not in before and name not in ancestors(self.graph, n)]
        return deps


def plan(params: str | Path, overrides: list[str] | None, force: bool = False, project: str | Path = ".",
         log=print) -> Plan:
    """Read the DAG and decide whether this run may use and update dvc.lock (restoring a torn one first).

    Incremental only in a DVC repo and with the config dvc.yaml reads (params.yaml plus location-only
    overrides): otherwise dvc.lock would misdescribe the outputs, so every stage runs and nothing is recorded.
    """
    from facerealism.mlops import lineage

    project = Path(project)
    if lineage.is_dvc_repo(project):
        restore_torn_lock(project, log)
    graph = stage_graph(project)
    if not lineage.is_dvc_repo(project):
        why = "not a DVC repo (no .dvc/ and dvc.yaml): every stage runs, nothing is recorded"
    else:
        why = lineage._why_not_committable(params, overrides, project) or ""
        why = f"{why}: every stage runs, dvc.lock is not updated" if why else ""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    alone = os.environ.get("FACEREALISM_TIMED_ALONE")  # "0"/"1" overrides the CPU-count rule (measurements)
    return Plan(project, graph, incremental=not why, reason=why, force=force,
                timed_alone=cpus < TIMED_ALONE_BELOW_CPUS if alone is None else alone == "1")


def changes(project: str | Path, name: str) -> list:
    """What DVC finds changed for one stage (deps, params, outs, command); [] when it is up to date."""
    from dvc.repo import Repo

    with _DVC, Repo(str(project)) as repo:
        return repo.status(targets=[name]).get(name, [])


# Under .dvc/tmp (DVC's own scratch, never tracked): the last dvc.lock that parsed, and a push that is owed.
GOOD_LOCK = ".dvc/tmp/facerealism-dvc.lock.good"
PUSH_OWED = ".dvc/tmp/facerealism-push-owed"


def _lock_whole(path: Path) -> bool:
    """True when `path` reads as a whole dvc.lock. A torn write is a prefix of one: cut mid-YAML it fails DVC's
    schema; cut mid-line it lacks the final newline or leaves a short hash (`md5: c3e4`), which DVC would take as
    "every stage changed" and rerun the pipeline."""
    from dvc.dvcfile import Lockfile
    from dvc.exceptions import DvcException
    from dvc.utils.strictyaml import load

    try:
        doc, text = load(str(path), Lockfile.SCHEMA)
    except DvcException:
        return False
    entries = [e for stage in ((doc or {}).get("stages") or {}).values()
               for e in [*stage.get("deps", []), *stage.get("outs", [])]]
    return text.endswith("\n") and all(re.fullmatch(r"[0-9a-f]{32}(\.dir)?", str(e.get("md5"))) for e in entries)


def restore_torn_lock(project: str | Path, log=print) -> bool:
    """Put back the last good dvc.lock when the current one does not parse (a kill while DVC rewrote it).

    Returns:
        True when dvc.lock was restored.
    """
    lock, good = Path(project) / "dvc.lock", Path(project) / GOOD_LOCK
    if not lock.exists() or _lock_whole(lock) or not good.exists():
        return False
    shutil.copyfile(good, lock)
    log(f"dvc.lock is torn (an interrupted write?): restored the last good one from {GOOD_LOCK}")
    return True


def commit(project: str | Path, name: str) -> None:
    """Record a finished stage in dvc.lock (and its outputs in the DVC cache), as `dvc commit -f NAME` does; keep
    a copy of the new dvc.lock to restore if a later write is torn, and mark a `dvc push` as owed."""
    from dvc.repo import Repo

    project = Path(project)
    with _DVC, Repo(str(project)) as repo:
        (project / PUSH_OWED).parent.mkdir(parents=True, exist_ok=True)
        (project / PUSH_OWED).touch()  # before the commit: its outputs enter the cache, and the remote lacks them
        repo.commit(name, force=True)
        part = project / (GOOD_LOCK + ".part")
        shutil.copyfile(project / "dvc.lock", part)
        os.replace(part, project / GOOD_LOCK)  # atomic: the copy itself is never torn


def run_or_skip(name: str, cfg, p: Plan, log=print) -> dict:
    """Run one stage unless DVC finds it up to date; record it in dvc.lock after it succeeds.

    Returns:
        The stage's summary, or {"up_to_date": True} when skipped.
    """
    from facerealism.stages import run_stage

    if p.incremental and not p.force:
        t0 = time.monotonic()
        changed = changes(p.project, name)
        if not changed:
            log(f"{name}: up to date (dvc status, {time.monotonic() - t0:.1f} s), outputs reused")
            p.up_to_date.append(name)
            return {"up_to_date": True}
        log(f"{name}: running, dvc status: {_describe(changed)}")
    else:
        log(f"{name}: running ({'--force' if p.force else 'not incremental'})")
    result = run_stage(name, cfg)
    if p.incremental:
        commit(p.project, name)
    p.ran.append(name)
    return result


def _describe(changed: list) -> str:
    parts = []
    for item in changed:
        if isinstance(item, dict):
            for kind, what in item.items():
                parts.append(f"{kind} {', '.join(what) if isinstance(what, dict) else what}")
        else:
            parts.append(str(item))
    return "; ".join(parts)[:300]


def finish(cfg, p: Plan, push: bool = True) -> dict:
    """After every stage succeeded: the report gathering evaluate and benchmark, then `dvc push` while one is owed
    (something was committed since the last successful push, in this run or an earlier one whose push failed).

    Returns:
        {"ran", "up_to_date", "incremental", "pushed", "reason"}.
    """
    from facerealism.mlops import lineage
    from facerealism.report import html as html_report

    reports = Path(cfg.paths.reports)
    if {"evaluate", "benchmark", "register"} & set(p.ran) or not (reports / "report.html").exists():
        html_report.write_report(reports)  # evaluate and benchmark may run concurrently; register decides: gather all
    pushed, why = False, p.reason or "nothing to push"
    owed = Path(p.project) / PUSH_OWED
    if p.incremental and push and owed.exists():
        remote = lineage.default_remote(p.project)
        if remote:
            _push(p.project, remote)
            owed.unlink()
            pushed, why = True, "ok"
        else:
            why = "no default DVC remote; not pushed (owed until one is set)"
    return {"ran": list(p.ran), "up_to_date": list(p.up_to_date), "incremental": p.incremental,
            "pushed": pushed, "reason": why}


def _push(project: Path, remote: str) -> None:
    """`dvc push` to `remote`; a failure names the remote and says the push stays owed (RemoteUnavailable when
    the remote could not be reached or answered 5xx: retried; UserError otherwise, e.g. a bad remote config)."""
    from facerealism.mlops import lineage
    from facerealism.errors import RemoteUnavailable, UserError

    try:
        lineage.dvc(["push", "-r", remote], project)
    except (ConnectionError, UserError) as e:
        url = lineage.dvc(["config", f"remote.{remote}.url"], project, check=False).stdout.strip()
        kind = RemoteUnavailable if isinstance(e, ConnectionError) else UserError
        raise kind(f"dvc push to remote '{remote}' ({url}) failed, outputs are kept and the push stays owed "
                   f"for the next run: {str(e).split(': ', 1)[-1]}") from e


# ---------------------------------------------------------------- what a run shows in Prefect


def promotion_markdown(decision: dict, tracking_uri: str) -> str:
    """The gate's decision with its reasons and links to the MLflow run and model version."""
    name, version = decision.get("model"), decision.get("version")
    base = tracking_uri.rstrip("/") if tracking_uri.startswith("http") else ""
    run_id = decision.get("run_id", "")
    model_link = f"[{name} v{version}]({base}/#/models/{name}/versions/{version})" if base else f"`{decision.get('model_uri')}`"
    run_link = (f"[{run_id}]({base}/#/experiments/{decision.get('experiment_id', '')}/runs/{run_id})" if base and run_id
                else f"`{run_id or 'n/a'}`")
    lines = [f"# Promotion: {'promoted' if decision.get('promoted') else 'not promoted'}",
             f"- model version: {model_link}", f"- MLflow run: {run_link}",
             f"- champion: {decision.get('champion')} (before: {decision.get('previous_champion')})",
             f"- tracking store: `{tracking_uri}`", "", "## Reasons", *[f"- {r}" for r in decision.get("reasons", [])]]
    fitted = decision.get("fitted", {})
    if "outcome" in decision:
        lines += ["", f"## Decision: {decision['outcome']}", decision["outcome_why"]]
    if fitted.get("considered"):
        lines += ["", f"## Fitted filter {fitted['label']} ({fitted['numbers']} numbers): "
                  + (f"version {fitted['version']}, {'promoted' if fitted['promoted'] else 'not promoted'}"
                     if "version" in fitted else "not registered"), *[f"- {r}" for r in fitted.get("reasons", [])]]
    return "\n".join(lines) + "\n"


def validation_markdown(summary: dict) -> str:
    keys = ("passed", "pairs", "valid", "quarantined", "failed_fraction", "max_failed_fraction", "orphans")
    lines = ["# Validation", "", "| field | value |", "|---|---|", *[f"| {k} | {summary.get(k)} |" for k in keys]]
    failed = [e for e in summary.get("expectations", []) if not e.get("success")]
    lines += ["", f"{len(failed)} expectation(s) failed" + (":" if failed else ".")]
    lines += [f"- {e['expectation']}: {e['meaning']} " + (f"({e['unexpected']} rows)" if e.get("row_level", True)
                                                          else f"(observed {e.get('observed')})") for e in failed]
    return "\n".join(lines) + "\n"


def publish_artifacts(cfg) -> list[str]:
    """Prefect artifacts for this flow run: Table 4, the promotion decision, the validation summary.

    Returns:
        The artifact keys created (a report that does not exist yet is left out).
    """
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from facerealism.mlops import tracking
    from facerealism.files import read_json

    reports, made = Path(cfg.paths.reports), []
    if (reports / "table4.json").exists():
        create_table_artifact(table4_rows(read_json(reports / "table4.json")), key="table4",
                              description="Table 4 on the held-out split (reports/table4.json)")
        made.append("table4")
    if (reports / "promotion.json").exists():
        create_markdown_artifact(promotion_markdown(read_json(reports / "promotion.json"), tracking._uri(cfg)),
                                 key="promotion", description="The gate's decision (reports/promotion.json)")
        made.append("promotion")
    if (reports / "validation.json").exists():
        create_markdown_artifact(validation_markdown(read_json(reports / "validation.json")), key="validation",
                                 description="Validation summary (reports/validation.json)")
        made.append("validation")
    return made
