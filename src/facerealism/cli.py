"""The `facerealism` command: run the pipeline or one stage, sweep, benchmark, and the consumers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from facerealism import env

env.configure()

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Realism head for fast text-to-image portraits: pipeline, stages and consumers.")
console = Console()
err = Console(stderr=True)


def params_file(path: Path) -> Path:
    """A params file; presets/NAME.yaml (or just NAME) names a preset's params.yaml (facerealism.presets), which
    lives in the preset's folder inside the package."""
    if path.exists():
        return path
    from facerealism import presets

    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if path.parent.name in ("presets", "") and name in presets.registry():
        return presets.get(name).params
    return path


ParamsOpt = Annotated[Path, typer.Option("--params", "-p", callback=params_file,
                                         help="params file (params.paper.yaml: the paper's GPU setup; "
                                              "presets/NAME.yaml: a model preset)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override, e.g. --set train.steps=100")]


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def summary_table(results: dict[str, dict]) -> Table:
    table = Table(title="facerealism pipeline", show_lines=True)
    table.add_column("stage", style="bold")
    table.add_column("result")
    for name, summary in results.items():
        table.add_row(name, "\n".join(f"{k}: {_fmt(v)}" for k, v in summary.items()))
    return table


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """Expected failures become one-line messages; anything else (a bare ValueError too) is a bug and keeps its
    traceback. Expected: the project's own errors (UserError, which ConfigError is; a failed validation) and
    files that do not exist or cannot be written, plus `more`."""
    from facerealism.errors import UserError, ValidationFailed

    return (UserError, ValidationFailed, FileNotFoundError, PermissionError, TimeoutError, *more)


@app.command()
def run(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
        force: Annotated[bool, typer.Option("--force", help="rerun every stage, even those DVC finds up to date")] = False,
        ) -> None:
    """Run the pipeline as one Prefect flow (stages DVC finds up to date are skipped); print a summary table."""
    from facerealism.config import load_config
    from facerealism.orchestration.preflight import require

    try:
        # Fail on a bad config, or on stage objects that cannot be built from it, before paying for anything.
        for warning in require(load_config(params, set_)).warnings:
            err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        _prefect_server()
        from flows.pipeline import pipeline

        results = pipeline(params=str(params), overrides=list(set_ or []), force=force)
    except _errors() as e:
        fail(str(e))
    console.print(summary_table(results))


def _prefect_server() -> None:
    """Use the project's Prefect server (started on first use, then reused) unless PREFECT_API_URL names one."""
    from facerealism.orchestration import localserver

    server = localserver.ensure()
    if server is not None:
        how = "started" if server.started else "running"
        console.print(f"Prefect server: {server.api_url[:-4]} ({how}, pid {server.pid}; "
                      "`facerealism server stop` ends it)", highlight=False)


server_app = typer.Typer(no_args_is_help=True, help="The project's own Prefect server (started by `run`).")
app.add_typer(server_app, name="server")


@server_app.command("status")
def server_status() -> None:
    """Print the project's Prefect server URL and PID, or that none is running (exit 1)."""
    from facerealism.orchestration import localserver

    server = localserver.running()
    if server is None:
        console.print("no Prefect server of this project is running")
        raise typer.Exit(1)
    console.print(f"{server.api_url[:-4]} (pid {server.pid}, home {server.home})", highlight=False)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the project's Prefect server (its database and the runs it recorded stay in .prefect/)."""
    from facerealism.orchestration import localserver

    server = localserver.stop()
    console.print(f"stopped the Prefect server on port {server.port} (pid {server.pid})" if server
                  else "no Prefect server of this project was running")


@app.command()
def check(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Preflight: build every stage's objects from the config without running any; exit 1 on the first mismatch."""
    from facerealism.config import load_config
    from facerealism.orchestration.preflight import preflight

    try:
        findings = preflight(load_config(params, set_))
    except _errors() as e:
        fail(str(e))
    for stage_name, what in findings.lines:
        console.print(f"[bold]{stage_name}[/]: {what}", highlight=False, soft_wrap=True)
    for warning in findings.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for problem in findings.errors[1:]:
        err.print(f"[red]also:[/] {problem}", highlight=False, soft_wrap=True)
    if findings.errors:
        fail(f"preflight: {findings.errors[0]}")
    console.print(f"preflight passed: {params}" + (f" with {len(set_)} override(s)" if set_ else ""))


@app.command("config")
def config_(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            changed: Annotated[bool, typer.Option("--changed", help="only values a file or --set sets")] = False) -> None:
    """Print the resolved config, one key a line, with where each value came from (default, a file, --set)."""
    import json

    from facerealism.config import resolve, sources_table

    try:
        cfg, sources = resolve(params, set_)
    except _errors() as e:
        fail(str(e))
    rows = [r for r in sources_table(cfg, sources) if not changed or r[2] != "default"]
    for key, value, source in rows:
        line = f"{key}: {json.dumps(value, ensure_ascii=False)}"
        console.print(f"{line:<56} # {source}", highlight=False, soft_wrap=True, markup=False)


@app.command()
def stage(name: Annotated[str, typer.Argument(help="prompts|generate|validate|audit|train|evaluate|benchmark|register")],
          params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Run one stage without any Prefect server (dvc.yaml calls this)."""
    from facerealism.config import load_config
    from facerealism.stages import run_stage

    try:
        result = run_stage(name, load_config(params, set_))
    except _errors() as e:
        fail(str(e))
    console.print(summary_table({name: result}))


@app.command()
def enhance(
    inputs: Annotated[list[Path], typer.Argument(help="image files, folders or quoted glob patterns ('in/**/*.png')")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    model: Annotated[str, typer.Option("--model", "-m", help="MLflow model URI or a head folder")] = "models:/facerealism-head@champion",
    params: ParamsOpt = Path("params.yaml"),
    overwrite: Annotated[bool, typer.Option(help="replace existing outputs")] = False,
    recursive: Annotated[bool, typer.Option(help="descend into sub-folders of folder inputs")] = True,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="images of one size per forward pass")] = 8,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="refuse larger images (width x height)")] = 4096 * 4096,
) -> None:
    """Apply a registered head to image files or folders; outputs keep the input names."""
    from facerealism.config import load_config
    from facerealism.enhance import enhance_paths, failure

    try:
        cfg = load_config(params) if params.exists() else None
        done, skipped, bad = enhance_paths(inputs, out, model, cfg, overwrite=overwrite, recursive=recursive,
                                           batch_size=batch_size, max_pixels=max_pixels)
    except _errors() as e:
        fail(str(e))
    console.print(f"enhanced {len(done)} image(s) into {out}" + (f", skipped {len(skipped)} existing" if skipped else ""))
    for path, reason in bad:
        err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)  # one line a file, greppable
    if failure(done, skipped, bad):
        raise typer.Exit(1)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="text prompt, e.g. 'A professional portrait of Ada Lovelace'")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    model: Annotated[str, typer.Option("--model", "-m", help="MLflow model URI or a head folder")] = "models:/facerealism-head@champion",
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="images per prompt (seeds derived from the prompt)")] = 1,
    enhance_: Annotated[bool, typer.Option("--enhance/--no-enhance", help="--no-enhance keeps the fast model's image, for comparison")] = True,
    overwrite: Annotated[bool, typer.Option(help="replace existing outputs")] = False,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Prompt -> fast (schnell) image -> realism head, through the configured generate backend."""
    from facerealism.config import load_config
    from facerealism.enhance import generate_images

    try:
        cfg = load_config(params, set_)
        written, skipped = generate_images(cfg, prompt, out, model, n=n, enhance=enhance_, overwrite=overwrite)
    except _errors() as e:
        fail(str(e))
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    if skipped:
        console.print(f"skipped {len(skipped)} existing (use --overwrite)")


@app.command()
def benchmark(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Time dev vs schnell vs schnell + head (Fig. 8) and the head's inference variants; print the tables."""
    from facerealism.config import load_config
    from facerealism.stages import run_stage

    try:
        # The stage prints the Fig. 8 and head-variant tables; reports/benchmark.json and report.html hold the rest.
        result = run_stage("benchmark", load_config(params, set_))
    except _errors() as e:
        fail(str(e))
    console.print(summary_table({"benchmark": result}))


@app.command("gpu-bench")
def gpu_bench(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON report")] = Path("reports/gpu_bench.json"),
    sizes: Annotated[list[int] | None, typer.Option("--size", help="pipeline side, repeatable (default 512 1024)")] = None,
    configs: Annotated[str, typer.Option(help="full (configs/flux1), tiny, or a folder of configs")] = "full",
    schnell: Annotated[str | None, typer.Option(help="real FLUX.1-schnell: hub id in the cache or local folder")] = None,
    dev: Annotated[str | None, typer.Option(help="real FLUX.1-dev: hub id in the cache or local folder")] = None,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="never look for real weights")] = False,
    head: Annotated[str | None, typer.Option(help="trained head folder (default: random, configs' head.json)")] = None,
    dtype: Annotated[str, typer.Option(help="pipeline precision: auto (bfloat16 where native, else float32), "
                                              "bfloat16, float16 or float32")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cuda or cpu")] = "auto",
    repeats: Annotated[int, typer.Option(min=1, help="timed calls per measurement, after one warm-up")] = 2,
    budget_s: Annotated[float, typer.Option(help="wall-time budget, model construction included")] = 480,
    head_size: Annotated[int, typer.Option(help="head throughput side")] = 512,
    head_batch: Annotated[list[int] | None, typer.Option(help="head batch sizes, repeatable (default 1..64)")] = None,
    train_size: Annotated[list[int] | None, typer.Option(help="training side, repeatable (default 256 512)")] = None,
    train_steps: Annotated[int, typer.Option(min=1, help="timed training steps per precision")] = 5,
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile head variants")] = True,
    preset: Annotated[list[str] | None, typer.Option("--preset", help="instead: preset NAME's fast T2I, slow I2I and "
                                                     "slow T2I (repeatable); --configs full or tiny")] = None,
) -> None:
    """Full-size FLUX.1 dev img2img vs schnell + head, head throughput, training speed: one JSON and tables."""
    from facerealism.bench import gpu as kit

    if preset:
        from facerealism.bench.presets import run_preset_kit

        try:
            report = run_preset_kit(out, preset, sizes, configs, dtype, device, repeats, budget_s)
        except _errors() as e:
            fail(str(e))
        for name, r in report["presets"].items():
            for side, row in r.get("sizes", {}).items():
                console.print(f"{name} {side}^2: " + ", ".join(
                    f"{k} {row[k]['denoiser_calls']} calls {row[k]['ms_per_image']} ms {row[k]['tflop']} TFLOP"
                    for k in ("fast", "slow_i2i", "slow_t2i")) + f"; fast/slow_t2i counted "
                    f"{row['ratio']['fast/slow_t2i']['counted_flops_pct']} %, measured "
                    f"{row['ratio']['fast/slow_t2i']['measured_pct']} %")
        console.print(f"report: {out} ({report['wall_s']} s of a {budget_s:.0f} s budget)")
        return

    try:
        report = kit.run_kit(out, sizes or [512, 1024], configs, schnell, dev, head, dtype, device, repeats, budget_s,
                             head_size, tuple(head_batch or (1, 2, 4, 8, 16, 32, 64)),
                             tuple(train_size or (256, 512)), train_steps, compile, use_real=not random_weights)
    except _errors() as e:
        fail(str(e))
    for table in kit.tables(report):
        console.print(table)
    console.print(f"report: {out} ({report['wall_s']} s of a {budget_s:.0f} s budget)")


@app.command("preset-flops")
def preset_flops(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON report")] = Path("reports/preset_flops.json"),
    sizes: Annotated[list[int] | None, typer.Option("--size", help="image side, repeatable (default 512 1024)")] = None,
    preset: Annotated[list[str] | None, typer.Option("--preset", help="preset name, repeatable (default all)")] = None,
) -> None:
    """FLOPs per image of each preset's fast and slow model at full size, counted on the meta device (no weights)."""
    from rich.table import Table

    from facerealism import presets
    from facerealism.speed import preset_flops as pf
    from facerealism.files import write_json

    rows = []
    try:
        for name in preset or presets.names():
            for size in sizes or [512, 1024]:
                rows.append(pf.preset_cost(name, size))
    except _errors() as e:
        fail(str(e))
    write_json(out, {"method": "meta-device FlopCounterMode over the presets' architecture configs (transcribed "
                                "published configs)",
                     "rows": rows})
    table = Table("preset", "size", "fast TFLOP (calls)", "slow T2I TFLOP (calls)", "slow I2I TFLOP (calls)",
                  "fast % of slow T2I", "fast + slow I2I %")
    for r in rows:
        cell = lambda k: f"{r[k]['tflop']} ({r[k]['denoiser_calls']})"  # noqa: E731
        table.add_row(r["preset"], str(r["size"]), cell("fast"), cell("slow_t2i"), cell("slow_i2i"),
                      str(r["fast_pct_of_slow_t2i"]), str(r["fast_plus_slow_i2i_pct_of_slow_t2i"]))
    console.print(table)
    console.print(f"report: {out}")


@app.command()
def trial(name: Annotated[str, typer.Argument(help="the trial's name: models/trials/NAME, a row of reports/trials.md")],
          params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
          retrain: Annotated[bool, typer.Option("--retrain/--rescore", help="--rescore scores the trial's saved head again")] = True,
          ) -> None:
    """A recipe trial: train with --set overrides, score on the validation split (never the test split)."""
    from facerealism import trials
    from facerealism.config import load_config
    from facerealism.orchestration.preflight import require

    try:
        cfg = load_config(params, set_)
        require(cfg)
        row = trials.run_trial(cfg, name, list(set_ or []), train=retrain)
    except _errors() as e:
        fail(str(e))
    console.print(trials.markdown({name: row}), highlight=False, markup=False, soft_wrap=True)


@app.command()
def sweep(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Sweep the sweep section's lambda_cyc x lr grid as a Prefect flow of parallel trials; print the table."""
    from facerealism import sweep as sweep_lib
    from facerealism.config import load_config
    from facerealism.orchestration.preflight import require

    try:
        require(load_config(params, set_))  # every trial builds the same head: fail before the first one starts
        _prefect_server()
        from flows.sweep import run_sweep

        report = run_sweep(str(params), list(set_ or []))
    except _errors() as e:
        fail(str(e))
    console.print(sweep_lib.table(report))


@app.command("data-for")
def data_for(
    model_uri: Annotated[str, typer.Argument(help="e.g. models:/facerealism-head/3 or models:/facerealism-head@champion")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder inside the project to restore into")] = Path("recovered"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Recover the exact dataset a registered model version was trained on (DVC cache or remote)."""
    from facerealism.mlops import lineage, tracking
    from facerealism.config import load_config

    try:
        cfg = load_config(params)
        restored = lineage.data_for(model_uri, out, tracking_uri=tracking._uri(cfg))
    except _errors() as e:
        fail(str(e))
    for name, path in restored.items():
        console.print(f"{name}: {path}")


@app.command()
def rollback(
    version: Annotated[str, typer.Argument(help="the registered version to make champion again")],
    reason: Annotated[str, typer.Option("--reason", help="recorded on the withdrawn versions")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Move @champion back to VERSION and withdraw newer gate-passing versions so the next run keeps it."""
    from facerealism.mlops import registry, tracking
    from facerealism.config import load_config

    try:
        cfg = load_config(params)
        previous = registry.rollback_champion(cfg.register.model_name, version, reason, tracking._uri(cfg))
    except _errors() as e:
        fail(str(e))
    console.print(f"champion: {previous or 'none'} -> {version}")


@app.command()
def rate(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
         host: Annotated[str | None, typer.Option(help="default: rate.host")] = None,
         port: Annotated[int | None, typer.Option(help="default: rate.port")] = None) -> None:
    """Serve the rating page: people pick which of two portraits looks real (head vs dev, schnell, fitted)."""
    from facerealism.config import load_config
    from facerealism.rating.server import create_app
    from facerealism.rating.trials import build_set, read_set
    from facerealism.rating.votes import VoteStore

    try:
        cfg = load_config(params, set_)
        folder = build_set(cfg)
        store = VoteStore(cfg.rate.database)
        app_ = create_app(folder, store, cfg.rate.display_px, cfg.rate.min_attention)
    except _errors() as e:
        fail(str(e))
    import uvicorn

    host, port = host or cfg.rate.host, port or cfg.rate.port
    console.print(f"rating {read_set(folder)['campaign']} ({len(read_set(folder)['trials'])} trials per rater), "
                  f"votes in {store.engine.url.render_as_string(hide_password=True)}")
    console.print(f"open http://{host}:{port}/ ; afterwards `facerealism rate-results` adds up the votes")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command("rate-results")
def rate_results(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Add up the rating page's votes: reports/ratings.json, MLflow metrics on the head's run, report.html."""
    from facerealism.config import load_config
    from facerealism.rating.results import summarise

    try:
        result = summarise(load_config(params, set_))
    except _errors() as e:
        fail(str(e))
    table = Table(title=f"rating {result['campaign']}: share of votes for the first set, 95 % CI")
    for col in ("comparison", "preference", "95 % CI", "votes", "raters"):
        table.add_column(col)
    for name, c in result["comparisons"].items():
        pref = "-" if c["preference"] is None else f"{c['preference']:.2f}"
        ci = "-" if c["ci95"] is None else f"[{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}]"
        table.add_row(f"{c['a']} vs {c['b']}", pref, ci, str(c["votes"]), str(c["raters"]))
    console.print(table)
    r = result["raters"]
    console.print(f"raters: {r['counted']} counted of {r['total']}; careless (failed attention checks): "
                  f"{', '.join(r['careless']) or 'none'}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
