#!/usr/bin/env bash
# Prove the base install (no extras: numpy, ai-edge-litert, onnxruntime, typer, rich; no TensorFlow)
# evaluates and benchmarks an exported model on its own, as a Raspberry Pi would.
#
#   bash .ci/base_venv_check.sh                                   # export a digits model first, then check
#   bash .ci/base_venv_check.sh --data DATA.npz ARTIFACT...      # check artifacts exported elsewhere
#
# Exporting needs the toolchain, so it runs with this checkout's python3 (the toolchain env); nothing is
# exported inside the fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
WORK="$(mktemp -d -t edgeslim-base-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

DATA=""
ARTIFACTS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA="$2"; shift 2 ;;
        *) ARTIFACTS+=("$1"); shift ;;
    esac
done

if [ ${#ARTIFACTS[@]} -eq 0 ]; then
    echo "== exporting a digits model with the toolchain ($PY)"
    "$PY" - "$WORK/export" <<'EOF'
import sys
from pathlib import Path

import numpy as np

from edgeslim.data import load_dataset
from edgeslim.export import export_model
from edgeslim.train.config import TrainConfig
from edgeslim.train.fit import train_model
from edgeslim.train.zoo import build_model

out = Path(sys.argv[1])
data = load_dataset("digits")
config = TrainConfig(epochs=6, batch_size=32, optimizer="adam", learning_rate=0.003, seed=0)
model = train_model(build_model("digits_cnn", data.input_shape, 10), data, config, progress=False).model
artifacts = export_model(model, data, target="cpu", out_dir=out, calib_samples=64)
np.savez(out / "digits.npz", x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
for a in artifacts:
    print(a.path, f"accuracy {a.sidecar['verification']['accuracy']:.4f}")
EOF
    DATA="$WORK/export/digits.npz"
    ARTIFACTS=("$WORK/export/model_int8.tflite" "$WORK/export/model_int8.onnx")
fi
[ -n "$DATA" ] || { echo "error: pass --data DATA.npz with the artifacts" >&2; exit 2; }

echo "== fresh venv with the base package only"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q .
"$VPY" - <<'EOF'
import importlib.util
import sys

present = [m for m in ("tensorflow", "keras", "tf2onnx", "onnx", "sklearn") if importlib.util.find_spec(m)]
if present:
    sys.exit(f"the base install pulled in {present}")
try:
    import tensorflow  # noqa: F401
except ImportError:
    print("ok: import tensorflow fails in the base venv")
else:
    sys.exit("import tensorflow succeeded in the base venv")
EOF

for artifact in "${ARTIFACTS[@]}"; do
    echo "== $artifact"
    "$WORK/venv/bin/edgeslim" eval "$artifact" --dataset npz --data-dir "$DATA" --json > "$WORK/eval.json"
    "$WORK/venv/bin/edgeslim" bench "$artifact" --runs 50 --json > "$WORK/bench.json"
    "$VPY" - "$WORK/eval.json" "$WORK/bench.json" <<'EOF'
import json
import sys

result, timing = (json.load(open(p)) for p in sys.argv[1:3])
assert result["samples"] > 0 and 0.0 <= result["accuracy"] <= 1.0, result
assert timing["p50_ms"] > 0 and timing["throughput_per_s"] > 0, timing
print(f"eval: accuracy {result['accuracy']:.4f} on {result['samples']} samples ({result['backend']}); "
      f"bench: p50 {timing['p50_ms']:.3f} ms, p99 {timing['p99_ms']:.3f} ms")
EOF
done
echo "base venv check passed"
