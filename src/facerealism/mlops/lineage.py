"""Data lineage: the DVC hashes and commits tied to MLflow runs, and the data a registered model was trained on."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from facerealism.errors import UserError

# What a trained head depends on, as dvc.yaml names it; every MLflow run is tagged with these hashes.
DATASET = ("data/pairs", "data/validated.parquet")
# Config keys that change where results are logged, never what is produced: overriding them keeps dvc.lock honest.
LOCATION_ONLY = {"mlflow_uri", "mlflow_artifacts", "experiment"}


# ---------------------------------------------------------------- DVC hashes


def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(path: str | Path) -> str:
    """The hash DVC 3 records for `path` in dvc.lock: md5 of a file, or `<md5>.dir` of a folder.

    A folder's hash is the md5 of DVC's JSON listing ([{"md5", "relpath"}] sorted by relpath), so the value
    equals dvc.lock's and names the same object in the DVC cache and remote.
    """
    path = Path(path)
    if path.is_file():
        return _md5_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"cannot hash {path}: no such file or folder")
    entries = sorted(
        ({"md5": _md5_file(p), "relpath": p.relative_to(path).as_posix()} for p in path.rglob("*") if p.is_file()),
        key=lambda e: e["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def lock_hashes(project: str | Path = ".") -> dict[str, str]:
    """{out path: md5} of every stage output recorded in dvc.lock ({} when there is no lock)."""
    lock = Path(project) / "dvc.lock"
    if not lock.exists():
        return {}
    doc = yaml.safe_load(lock.read_text()) or {}
    found = {}
    for stage in (doc.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if "md5" in out:
                found[out["path"]] = out["md5"]
    return found


def dataset_tags(data_dir: str | Path = "data", project: str | Path = ".") -> dict[str, str]:
    """MLflow tags naming the exact training data: `data.<name>.md5` per dataset path, plus where each came from.

    The hash is computed from the files on disk (what the run actually reads); `data.<name>.in_dvc_lock` says
    whether dvc.lock already records that very hash (false: outputs not yet committed with `dvc commit`).
    """
    locked = lock_hashes(project)
    tags = {}
    for rel in DATASET:
        path = Path(data_dir) / Path(rel).name
        if not path.exists():
            continue
        name = Path(rel).name.split(".")[0]
        value = content_hash(path)
        tags[f"data.{name}.md5"] = value
        tags[f"data.{name}.in_dvc_lock"] = str(locked.get(rel) == value).lower()
    return tags


# ---------------------------------------------------------------- DVC commands


def dvc(args: list[str], cwd: str | Path = ".", check: bool = True) -> subprocess.CompletedProcess:
    """Run the venv's `dvc` with analytics off; a failure raises with DVC's own last message (ConnectionError
    when the output says the remote could not be reached, ValueError otherwise)."""
    exe = Path(sys.executable).with_name("dvc")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run([str(exe) if exe.exists() else "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        from facerealism.errors import transient_text

        output = res.stderr.strip() or res.stdout.strip()
        lines = output.splitlines() or ["(no output)"]  # the last one sums up, the first one says why
        message = f"`dvc {' '.join(args)}` failed in {Path(cwd).resolve()}: {lines[-1]}"
        message += f" ({lines[0][:200]})" if len(lines) > 1 else ""
        if transient_text(output):  # an unreachable remote: worth a retry, unlike a bad argument
            raise ConnectionError(message)
        raise UserError(message)
    return res


def is_dvc_repo(project: str | Path = ".") -> bool:
    return (Path(project) / ".dvc").is_dir() and (Path(project) / "dvc.yaml").is_file()


def dvc_status_clean(project: str | Path = ".") -> bool:
    """True when every stage's deps and outs match dvc.lock."""
    out = dvc(["status", "--json"], project).stdout.strip()
    return json.loads(out or "{}") == {}


def default_remote(project: str | Path = ".") -> str:
    """The default DVC remote's name ("" when there is none)."""
    res = dvc(["remote", "default"], project, check=False)
    return res.stdout.strip() if res.returncode == 0 else ""  # without one, DVC says so on stdout and exits 1


def has_default_remote(project: str | Path = ".") -> bool:
    return bool(default_remote(project))


def _why_not_committable(params: str | Path, overrides: list[str] | None, project: Path) -> str | None:
    """None when the run's config is what dvc.yaml reads (params.yaml, location-only overrides); else the reason."""
    from facerealism.config import load_config

    params = project / params  # a relative path is the project's (an absolute one stays as it is)
    if params.resolve() != (project / "params.yaml").resolve():
        return f"the run used {params}, but dvc.yaml reads params.yaml"
    ran = load_config(params, overrides).dump()
    filed = load_config(project / "params.yaml").dump()
    for doc in (ran, filed):
        for key in LOCATION_ONLY:
            doc["paths"].pop(key, None)
    changed = sorted(k for k in ran if ran[k] != filed[k])
    if changed:
        return f"overrides changed {', '.join(changed)} (not in params.yaml), so dvc.lock would misdescribe the outputs"
    return None


def record_outputs(params: str | Path = "params.yaml", overrides: list[str] | None = None,
                   project: str | Path = ".", push: bool = True) -> dict:
    """After a successful pipeline run: `dvc commit -f` the outputs into dvc.lock, then `dvc push` to the default remote.

    Called only at the end of a run that succeeded, so a failed run never changes dvc.lock or the remote.
    Skipped (with the reason returned) when the project is not a DVC repo or the run's config is not params.yaml.

    Returns:
        {"committed": bool, "pushed": bool, "reason": str} — reason explains a skip.
    """
    project = Path(project)
    if not is_dvc_repo(project):
        return {"committed": False, "pushed": False, "reason": "not a DVC repo (no .dvc/ and dvc.yaml)"}
    why = _why_not_committable(params, overrides, project)
    if why:
        return {"committed": False, "pushed": False, "reason": why}
    dvc(["commit", "-f"], project)
    pushed = False
    if push and has_default_remote(project):
        dvc(["push"], project)
        pushed = True
    return {"committed": True, "pushed": pushed, "reason": "ok" if pushed else "no default DVC remote; not pushed"}


def data_for(model_uri: str, dest: str | Path, tracking_uri: str | None = None, project: str | Path = ".") -> dict[str, Path]:
    """Recover the exact training data of a registered model version from the DVC cache or remote.

    `models:/NAME/VERSION` (or `models:/NAME@alias`) -> the version's run -> its `data.*.md5` tags -> a `.dvc`
    file per dataset under `dest` -> `dvc pull` materialises the very bytes the head was trained on.

    Args:
        model_uri: a registry URI, e.g. models:/facerealism-head/3 or models:/facerealism-head@champion.
        dest: a folder inside the DVC project to restore into (e.g. recovered/v3).
        tracking_uri: the MLflow tracking/registry URI (default: MLflow's current one).
    Returns:
        {dataset name: restored path}.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if not model_uri.startswith("models:/"):
        raise UserError(f"expected models:/NAME/VERSION or models:/NAME@ALIAS, got {model_uri!r}")
    ref = model_uri[len("models:/"):]
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, version = ref.rsplit("/", 1)
            mv = client.get_model_version(name, version)
        tags = client.get_run(mv.run_id).data.tags
    except (MlflowException, ValueError) as e:
        raise UserError(f"cannot resolve {model_uri}: {str(e).splitlines()[0]}") from None
    hashes = {k[len("data."):-len(".md5")]: v for k, v in tags.items() if k.startswith("data.") and k.endswith(".md5")}
    if not hashes:
        raise UserError(f"{model_uri} (run {mv.run_id}) has no data.*.md5 tags; it was trained before dataset tagging")
    dest = Path(project) / dest
    dest.mkdir(parents=True, exist_ok=True)
    restored, dvc_files = {}, []
    for rel in DATASET:
        base = Path(rel).name
        key = base.split(".")[0]
        if key not in hashes:
            continue
        spec = {"outs": [{"md5": hashes[key], "path": base, "hash": "md5"}]}
        dvc_file = dest / f"{base}.dvc"
        dvc_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        dvc_files.append(str(dvc_file.relative_to(project)))
        restored[key] = dest / base
    # pull = fetch from the default remote when the local cache lacks the objects, then check out.
    dvc(["pull", *dvc_files], project)
    return restored
