#!/usr/bin/env bash
# The device check: on a machine with an NVIDIA GPU and its own CUDA torch, install the project
# over that torch (never reinstalling torch) and run benchmarks/gpu_check.py: `pytest -m gpu` and
# the paper-size benchmarks (image path E_L o D_G, latent path, Glow training), each step with its
# own timeout, about 8 minutes in all. Writes benchmarks/out/gpu_check.json (raw) and
# docs/results/gpu_check.json (the results page's table).
#
#   bash benchmarks/gpu_check.sh [--dry-run]
#
# Without CUDA (or with --dry-run) the steps run on the CPU at tiny sizes, the pytest step is
# skipped, and the table says "not run: no GPU".
#
# Environment: PYTHON: the interpreter with the machine's torch (default: .venv/bin/python when it
# already has the project, else python3); GPU_CHECK_VENV: the venv made over it with
# --system-site-packages (default .gpu-venv); GPU_CHECK_WHEELS: a folder of wheels for the
# packages the machine lacks, for machines without a package index (default
# benchmarks/out/wheelhouse, made by `bash benchmarks/gpu_check.sh --wheels PYVER`).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

usage() { echo "usage: bash benchmarks/gpu_check.sh [--dry-run | --wheels PYTHON_VERSION]" >&2; }
WHEELS=${GPU_CHECK_WHEELS:-benchmarks/out/wheelhouse}
# The project's dependencies besides torch, by import name (onnxruntime: either build provides it).
DEPS="pydantic:pydantic>=2 safetensors:safetensors>=0.4 numpy:numpy>=1.24 click:click>=8
cryptography:cryptography>=41 onnx:onnx>=1.15 onnxscript:onnxscript tqdm:tqdm>=4.60
scipy:scipy>=1.10 PIL:pillow>=9 h5py:h5py>=3.8 matplotlib:matplotlib>=3.6 pytest:pytest>=7
hypothesis:hypothesis>=6 onnxruntime:onnxruntime>=1.17"

DRY=()
case "${1:-}" in
    "") ;;
    --dry-run) DRY=(--dry-run) ;;
    --wheels)
        # On a machine with a package index: wheels of the small pure-Python dependencies for a
        # device machine's Python (e.g. 3.12), to carry there (the big ones are usually present).
        [[ -n "${2:-}" ]] || { usage; exit 2; }
        mkdir -p "$WHEELS"
        exec python3 -m pip download --quiet --only-binary=:all: --python-version "$2" \
            --platform manylinux2014_x86_64 --dest "$WHEELS" \
            "pydantic>=2" "tqdm>=4.60" "click>=8" "hypothesis>=6" "pytest>=7"
        ;;
    -h | --help) usage; exit 0 ;;
    *) usage; exit 2 ;;
esac

# 1. An interpreter with torch and the project.
if [[ -n "${PYTHON:-}" ]]; then
    BASE=$PYTHON
elif [[ -x .venv/bin/python ]] && .venv/bin/python -c "import lassi.consumer, torch" 2>/dev/null; then
    BASE=.venv/bin/python
else
    BASE=python3
fi
if "$BASE" -c "import lassi.spec, lassi.regulator, lassi.producer, lassi.consumer" 2>/dev/null; then
    PY=$BASE
else
    "$BASE" -c "import torch" 2>/dev/null || {
        echo "gpu_check: $BASE has no torch; set PYTHON to the interpreter with the machine's torch" >&2
        exit 2
    }
    VENV=${GPU_CHECK_VENV:-.gpu-venv}
    [[ -x $VENV/bin/python ]] || timeout 120 "$BASE" -m venv --system-site-packages "$VENV" || exit 3
    PY=$VENV/bin/python
    PIP=(timeout 180 "$PY" -m pip install --quiet --disable-pip-version-check)
    missing=()
    for dep in $DEPS; do
        "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${dep%%:*}') is None)" \
            || missing+=("${dep#*:}")
    done
    if ((${#missing[@]})); then
        echo "gpu_check: installing what the machine lacks: ${missing[*]}"
        for req in "${missing[@]}"; do  # one at a time: one absent wheel does not block the rest
            if [[ -d $WHEELS ]]; then
                "${PIP[@]}" --no-index --find-links "$WHEELS" "$req"
            else
                "${PIP[@]}" "$req"
            fi || echo "gpu_check: could not install $req; the steps needing it fail" >&2
        done
    fi
    # --no-deps: the machine's torch stays; the dependencies were handled above.
    "${PIP[@]}" --no-deps --no-build-isolation \
        -e ./spec_schema -e ./regulator -e ./producer -e ./consumer || {
        echo "gpu_check: installing the project into $VENV failed" >&2
        exit 3
    }
fi
"$PY" -c "import torch; print('gpu_check: torch', torch.__version__, 'cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 2. The steps (each with its own timeout inside the driver).
exec timeout 560 "$PY" benchmarks/gpu_check.py "${DRY[@]}"
