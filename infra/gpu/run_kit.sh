#!/usr/bin/env bash
# Run the GPU benchmark kit (`facerealism gpu-bench`) on a fresh CUDA box in one command, within ~8 minutes.
#
#   infra/gpu/run_kit.sh [extra gpu-bench options, e.g. --schnell DIR --dev DIR]
#
# Env: OUT (report folder; default reports/), PYTHON (default python3), BUDGET_S (the kit's own budget,
# default 420 s so imports and CUDA start-up stay inside 8 min), KIT_TIMEOUT_S (hard stop, default 540 s).
# Installs only what the kit imports, at pyproject.toml's pins, and only when the interpreter lacks it;
# the repository itself runs from the checkout (PYTHONPATH), no install. Writes gpu_bench.json,
# gpu_bench.log and nvidia-smi.csv under OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${OUT:-reports}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"

if ! "$PY" -c "import torch, diffusers, transformers, accelerate, safetensors, numpy, pandas, PIL, yaml, pydantic, typer, rich" 2>/dev/null; then
  deps=$("$PY" - <<'PYEOF'
import re, tomllib
want = {"torch", "diffusers", "transformers", "accelerate", "safetensors", "numpy", "pandas", "pillow", "pyyaml",
        "pydantic", "typer", "rich"}
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(d for d in deps if re.split(r"[<>=!~ \[]", d)[0].lower() in want))
PYEOF
)
  echo "installing the kit's dependencies: $deps"
  # shellcheck disable=SC2086  # one argument per requirement
  "$PY" -m pip install --quiet $deps || { echo "error: could not install $deps (no package index reachable?); use an interpreter that has them (PYTHON=...)" >&2; exit 1; }
fi

nvidia-smi --query-gpu=name,memory.total,driver_version,mig.mode.current --format=csv > "$OUT_DIR/nvidia-smi.csv" 2>&1 || true
PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout --signal=INT --kill-after=20 "${KIT_TIMEOUT_S:-540}" \
  "$PY" -m facerealism.cli gpu-bench --out "$OUT_DIR/gpu_bench.json" --budget-s "${BUDGET_S:-420}" "$@" 2>&1 \
  | tee "$OUT_DIR/gpu_bench.log"
