"""Stage `benchmark`: the paper's Fig. 8 (dev vs schnell vs schnell + head), head inference variants, FLOPs model."""

from __future__ import annotations

from pathlib import Path

import torch

from facerealism.config import Config
from facerealism.data import catalog
from facerealism.files import write_json
from facerealism.head import load_head
from facerealism.mlops import tracking
from facerealism.speed import flops, timing


def run(cfg: Config) -> dict:
    from rich.console import Console

    from facerealism.report import html as html_report
    from facerealism.files import atomic_write_bytes

    b = cfg.benchmark
    device = timing.device()
    G, meta = load_head(catalog.HEAD.path(cfg))
    precision, bf16_skipped = timing.bf16_plan(b.mixed_precision, device)
    speed, best = timing.head_speed(G, cfg, device)
    pipes = timing.pipeline_speed(cfg, G, device)
    sizes = sorted({b.flops_size, *(b.pipeline_sizes if pipes["available"] else [])})
    model = flops.flux_cost_models(sizes, meta["arch"], meta["kwargs"])
    report = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "head_arch": meta["arch"], "head_kwargs": meta["kwargs"],
              "bf16": {"native": precision.native_bf16, "detection": precision.why, "skipped": bf16_skipped},
              "head_speed": speed, "head_best_variant": best, "pipelines": pipes,
              "flops": model[b.flops_size], "flops_by_size": {str(s): m for s, m in model.items()}}
    reports = Path(cfg.paths.reports)
    write_json(catalog.BENCHMARK_JSON.path(cfg), report)
    fig = catalog.FIG8.path(cfg)
    atomic_write_bytes(fig, html_report.fig8_png(report))
    html = html_report.write_report(reports)

    console = Console()
    for table in rich_tables(report):
        console.print(table)

    with tracking.run(cfg, "benchmark", run_id=meta.get("mlflow_run_id")):
        size0 = str(b.sizes[0])
        tracking.log_metrics({f"bench.head_images_per_s.{s}.{n}": r["images_per_s"]
                              for s, row in speed.items() for n, r in row.items() if isinstance(r, dict)})
        tracking.log_metrics({"bench.flops_cost_reduction_pct": report["flops"]["cost_reduction_pct"],
                              **({f"bench.measured_cost_reduction_pct.{s}": r["cost_reduction_pct_vs_dev"]
                                  for s, r in pipes["by_size"].items()} if pipes["available"] else {})})
        for path in (catalog.BENCHMARK_JSON.path(cfg), fig, html):
            tracking.log_artifact(path, "benchmark")
    summary = {f"images_per_s@{size0}": speed[size0]["fp32"]["images_per_s"],
               f"best_head_variant@{size0}": f"{best[size0]['variant']} ({best[size0]['ratio_vs_eager_fp32']}x)",
               "flops.cost_reduction_pct": report["flops"]["cost_reduction_pct"]}
    if pipes["available"]:
        last = str(b.pipeline_sizes[-1])
        summary[f"measured_cost_reduction_pct@{last}"] = pipes["by_size"][last]["cost_reduction_pct_vs_dev"]
    return summary


def rich_tables(report: dict) -> list:
    """The benchmark report as rich Tables: Fig. 8 measured + FLOPs model, and the head variants."""
    from rich.table import Table

    out = []
    pipes, model = report.get("pipelines", {}), report.get("flops_by_size", {})
    t = Table(title=f"Fig. 8 — measured on {report['device']}; * = FLOPs model of full-size FLUX.1",
              caption=f"measured: {pipes.get('models', 'pipelines not timed')}")
    for col in ("side", "pipeline", "ms/img", "img/s", "peak MB", "saved %", "TFLOP*", "saved* %"):
        t.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    keys = {"dev": "dev50_tflop", "schnell": "schnell4_tflop", "schnell+head": "schnell4_plus_head_tflop"}
    if pipes.get("available"):
        for size, row in sorted(pipes["by_size"].items(), key=lambda kv: int(kv[0])):  # JSON keys sort as text
            m = model.get(size, {})
            for name in keys:
                r = row[name]
                t.add_row(size, name, f"{r['ms_per_image']:.1f}", f"{r['images_per_s']:.3g}",
                          f"{r['peak_memory_mb']:.0f}",
                          f"{row['cost_reduction_pct_vs_dev']:.1f}" if name == "schnell+head" else "",
                          str(m.get(keys[name], "-")),
                          str(m.get("cost_reduction_pct", "-")) if name == "schnell+head" else "")
    else:
        for size, m in model.items():
            for name in keys:
                t.add_row(size, name, "-", "-", "-", "", str(m[keys[name]]),
                          str(m["cost_reduction_pct"]) if name == "schnell+head" else "")
    out.append(t)
    skipped = report.get("bf16", {}).get("skipped")
    h = Table(title=f"head inference variants ({report['head_arch']}), ratio to eager fp32 in the same run",
              caption=f"bf16 variants skipped: {skipped}" if skipped else None)
    for col in ("size", "variant", "batch", "ms/image", "images/s", "× eager fp32"):
        h.add_column(col, justify="right")
    for size, row in sorted(report["head_speed"].items(), key=lambda kv: int(kv[0])):
        for name, r in row.items():
            if isinstance(r, dict):
                h.add_row(size, name, str(r["batch"]), f"{r['ms_per_image']:.2f}", f"{r['images_per_s']:.2f}",
                          f"{r['ratio_vs_eager_fp32']:.2f}")
    out.append(h)
    return out
