#!/usr/bin/env bash
# The device check: on a machine with an NVIDIA GPU and its own CUDA torch, install the project
# over that torch (never reinstalling or shadowing it, never downloading anything) and run
# benchmarks/gpu_check.py: `pytest -m gpu` and the paper-size benchmarks (image path E_L o D_G,
# latent path, Glow training), each step with its own timeout, about 8 minutes in all when every
# step times out (the install takes under a minute). Writes benchmarks/out/gpu_check.json (raw,
# rewritten after each step) and docs/results/gpu_check.json (the results page's table).
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--out RAW.json] [--results TABLE.json]
#   bash benchmarks/gpu_check.sh --wheels [PYTHON_VERSIONS, e.g. 3.12,3.13]   (make gpu-wheelhouse)
#
# Without CUDA (or with --dry-run) the steps run on the CPU at tiny sizes, the pytest step is
# skipped, and the table says "not run: no GPU".
#
# On a lent device machine (the session's `run` tool: no package index there, 15 minutes of
# device time in all, the machine's start included), with benchmarks/wheelhouse built here first
# by `make gpu-wheelhouse` (wheels for Python 3.12 and 3.13 of what the device image lacks:
# pydantic and cryptography with their dependencies, and small fallbacks; 15 MiB, git-ignored):
#
#   run(command="bash benchmarks/gpu_check.sh --out $OUT/gpu_check_raw.json --results $OUT/gpu_check.json",
#       carry=["benchmarks/wheelhouse"], timeout_s=530)
#
# then give_back, unless a failed step is rerun at once. Back here, from the reply's files_at:
#
#   cp FILES_AT/gpu_check_raw.json benchmarks/out/gpu_check.json
#   .venv/bin/python benchmarks/gpu_check.py --from-raw benchmarks/out/gpu_check.json
#   .venv/bin/lassi-experiments report        (the results page; the lead's)
#
# The raw JSON and the table are rewritten after each step, so a run stopped at timeout_s still
# brings back the steps it finished.
#
# How the install works: the interpreter PYTHON (default: .venv/bin/python when it already has
# the project, else python3) is used as it is when it imports the project. Otherwise a venv
# GPU_CHECK_VENV (default .gpu-venv, git-ignored, reused by a rerun) is made over it with
# --without-pip and a .pth that adds the folders on the interpreter's own path, no more and no
# less (--system-site-packages would not do: the device's python3 is itself a venv,
# /opt/torch/.venv, and that option reaches the Python below it instead). Packages installed
# into the venv come first on its path; nothing is installed where the interpreter looks, so
# its torch is neither reinstalled nor shadowed (checked). The project's requirements besides
# torch (read from the pyproject.toml files) that the machine lacks go into that venv by pip with
# --no-index from the wheel folder GPU_CHECK_WHEELS (default benchmarks/wheelhouse); what is
# still missing is named in one line. The project itself is installed editable with --no-deps
# --no-build-isolation --no-index (or, without a usable setuptools, its source folders go on
# the venv's path). GPU_CHECK_INDEX=1 lets pip use its configured index for the requirements
# (a machine with internet access). pip's messages go to benchmarks/out/gpu_check_install.log.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

usage() {
    echo "usage: bash benchmarks/gpu_check.sh [--dry-run] [--out RAW.json] [--results TABLE.json]" \
        "| --wheels [PYTHON_VERSIONS, default 3.12]" >&2
}
WHEELS=${GPU_CHECK_WHEELS:-benchmarks/wheelhouse}
# The requirements whose wheels the wheelhouse holds: those the device image lacks (pydantic,
# cryptography) and small ones as a fallback; the large ones (numpy, scipy, onnx, onnxruntime,
# matplotlib, h5py, pillow) are in the image and would not fit in what a `run` carries.
WHEEL_NAMES="pydantic cryptography click tqdm safetensors pytest hypothesis"

DRY=()
PASS=()
MODE=check
while (($#)); do
    case $1 in
        --dry-run) DRY=(--dry-run) ;;
        --out | --results)
            [[ $# -ge 2 && -n $2 ]] || { usage; exit 2; }
            PASS+=("$1" "$2")
            shift
            ;;
        --wheels)
            MODE=wheels
            PYVERS=3.12
            if [[ $# -ge 2 && $2 != -* ]]; then PYVERS=$2; shift; fi
            ;;
        -h | --help) usage; exit 0 ;;
        *) usage; exit 2 ;;
    esac
    shift
done

if [[ $MODE == wheels ]]; then
    # Here, with a package index: the wheels for the device machine's Python (x86-64 Linux).
    BUILDER=${PYTHON:-python3}
    [[ -x .venv/bin/python && -z ${PYTHON:-} ]] && BUILDER=.venv/bin/python
    mapfile -t all < <("$BUILDER" benchmarks/gpu_check.py --requirements)
    reqs=()
    for line in "${all[@]}"; do
        name=${line%%[^A-Za-z0-9._-]*}
        if [[ " $WHEEL_NAMES " == *" $name "* ]]; then reqs+=("$line"); fi
    done
    ((${#reqs[@]})) || { echo "gpu_check: no requirements read from the pyproject files" >&2; exit 2; }
    mkdir -p "$WHEELS"
    for version in ${PYVERS//,/ }; do
        "$BUILDER" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
            --python-version "$version" --implementation cp \
            --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --dest "$WHEELS" "${reqs[@]}" || {
            echo "gpu_check: could not download the wheels for Python $version" >&2
            exit 3
        }
    done
    echo "gpu_check: $WHEELS holds $(find "$WHEELS" -name '*.whl' | wc -l) wheels," \
        "$(du -sm "$WHEELS" | cut -f1) MiB (a run carries at most 64 MiB with the working tree)"
    exit 0
fi

mkdir -p benchmarks/out
LOG=benchmarks/out/gpu_check_install.log
: >"$LOG"
IMPORT="import lassi.spec, lassi.regulator, lassi.producer, lassi.consumer"

# 1. An interpreter with the machine's torch and the project.
if [[ -n "${PYTHON:-}" ]]; then
    BASE=$PYTHON
elif [[ -x .venv/bin/python ]] && .venv/bin/python -c "$IMPORT, torch" 2>/dev/null; then
    BASE=.venv/bin/python
else
    BASE=python3
fi
TORCH=$("$BASE" -c "import torch; print(torch.__file__)" 2>/dev/null) || {
    echo "gpu_check: $BASE has no torch; set PYTHON to the interpreter with the machine's torch" >&2
    exit 2
}
if "$BASE" -c "$IMPORT" 2>/dev/null; then
    PY=$BASE
else
    VENV=${GPU_CHECK_VENV:-.gpu-venv}
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        rm -rf "$VENV"
        timeout 60 "$BASE" -m venv --without-pip "$VENV" || {
            echo "gpu_check: could not make the venv $VENV over $BASE" >&2
            exit 3
        }
    fi
    PY=$VENV/bin/python
    SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") || exit 3
    # Every folder on the interpreter's path (its stdlib is the venv's own and is skipped), as
    # site folders, so that their .pth files run as they do for the interpreter.
    "$BASE" -c 'import os, sys
dirs = [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]
print("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs))' >"$SITE/_gpu_check_base.pth" || exit 3

    # pip from the base (seen through the .pth), offline unless GPU_CHECK_INDEX=1.
    if [[ ${GPU_CHECK_INDEX:-0} == 1 ]]; then
        PIP=(env PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 timeout 300 "$PY" -m pip install --quiet)
    else
        PIP=(env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT
            PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_ROOT_USER_ACTION=ignore
            PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
            timeout 120 "$PY" -m pip install --quiet --no-index)
        [[ -d $WHEELS ]] && PIP+=(--find-links "$WHEELS")
    fi
    HAVE_PIP=1
    "$PY" -m pip --version >/dev/null 2>&1 || HAVE_PIP=0

    # The project's requirements besides torch that the machine lacks.
    mapfile -t MISSING < <("$PY" benchmarks/gpu_check.py --requirements --missing)
    if ((${#MISSING[@]})) && ((HAVE_PIP)) && { [[ -d $WHEELS ]] || [[ ${GPU_CHECK_INDEX:-0} == 1 ]]; }; then
        echo "gpu_check: installing into $VENV (from $WHEELS, offline): ${MISSING[*]}"
        if ! "${PIP[@]}" "${MISSING[@]}" 2>>"$LOG"; then
            for req in "${MISSING[@]}"; do  # one at a time: one absent wheel does not block the rest
                "${PIP[@]}" "$req" 2>>"$LOG"
            done
        fi
        mapfile -t MISSING < <("$PY" benchmarks/gpu_check.py --requirements --missing)
    fi
    if ((${#MISSING[@]})); then
        pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        how="bash benchmarks/gpu_check.sh --wheels $pyver where pip has an index, then carry it"
        why="no wheel of them for Python $pyver in $WHEELS: $how"
        [[ -d $WHEELS ]] || why="no $WHEELS: $how"
        ((HAVE_PIP)) || why="$PY has no pip"
        echo "gpu_check: missing ${MISSING[*]} ($why); the steps that need them fail" >&2
        [[ -s $LOG ]] && tail -n 3 "$LOG" >&2
    fi

    # The project, from this working tree, without its dependencies.
    if ! "$PY" -c "$IMPORT" 2>/dev/null; then
        if ! ((HAVE_PIP)) || ! "${PIP[@]}" --no-index --no-deps --no-build-isolation \
            -e ./spec_schema -e ./regulator -e ./producer -e ./consumer 2>>"$LOG"; then
            echo "gpu_check: pip could not install the project (see $LOG); its source folders" \
                "go on $VENV's path instead" >&2
            [[ -s $LOG ]] && tail -n 2 "$LOG" >&2
            printf '%s\n' "$PWD/spec_schema/src" "$PWD/regulator/src" "$PWD/producer/src" \
                "$PWD/consumer/src" >"$SITE/_gpu_check_lassi_src.pth"
        fi
    fi
fi
if ! err=$("$PY" -c "$IMPORT" 2>&1); then
    echo "gpu_check: the project does not import with $PY: $(tail -n 1 <<<"$err")" >&2
    exit 3
fi
# The machine's torch, not another one.
[[ $("$PY" -c "import torch; print(torch.__file__)") == "$TORCH" ]] || {
    echo "gpu_check: $PY imports another torch than $BASE's ($TORCH)" >&2
    exit 3
}
"$PY" -c "import torch; print('gpu_check: torch', torch.__version__, 'from', torch.__file__, 'cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 2. The steps (each with its own timeout inside the driver: 430 s at most).
exec timeout 460 "$PY" benchmarks/gpu_check.py "${DRY[@]}" "${PASS[@]}"
