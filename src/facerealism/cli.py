"""The `facerealism` command: run the pipeline, run one stage, enhance images."""

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

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file (params.paper.yaml: the paper's GPU setup)")]
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


def _errors():
    """Expected failures become one-line messages; anything else is a bug and keeps its traceback."""
    from facerealism.config import ConfigError
    from facerealism.stages.validate import ValidationFailed

    return (ConfigError, ValidationFailed, ValueError, FileNotFoundError, PermissionError)


@app.command()
def run(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Run the whole pipeline as one Prefect flow and print a summary table."""
    from facerealism.config import load_config

    try:
        load_config(params, set_)  # fail on bad config before paying for a Prefect server
        from flows.pipeline import pipeline

        results = pipeline(params=str(params), overrides=list(set_ or []))
    except _errors() as e:
        fail(str(e))
    console.print(summary_table(results))


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
    inputs: Annotated[list[Path], typer.Argument(help="image files or folders")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    model: Annotated[str, typer.Option("--model", "-m", help="MLflow model URI or a head folder")] = "models:/facerealism-head@champion",
    params: ParamsOpt = Path("params.yaml"),
    overwrite: Annotated[bool, typer.Option(help="replace existing outputs")] = False,
) -> None:
    """Apply a registered head to image files or folders; outputs keep the input names."""
    from facerealism.config import load_config
    from facerealism.enhance import enhance_paths

    try:
        cfg = load_config(params) if params.exists() else None
        done, skipped, bad = enhance_paths(inputs, out, model, cfg, overwrite=overwrite)
    except _errors() as e:
        fail(str(e))
    console.print(f"enhanced {len(done)} image(s) into {out}" + (f", skipped {len(skipped)} existing" if skipped else ""))
    for path, reason in bad:
        err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)
    if bad and not done and not skipped:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
