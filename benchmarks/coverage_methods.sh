#!/usr/bin/env bash
# Which similarity set contains the real orientation siblings? One small 3D Shapes Glow, then
# define with each attribute-vector method; each spec records the regulator's coverage measurement.
# Usage: bash benchmarks/coverage_methods.sh OUT_DIR   (then: python benchmarks/coverage_table.py OUT_DIR)
set -euo pipefail
out=${1:?usage: coverage_methods.sh OUT_DIR}
mkdir -p "$out"
bin=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin
DATA="--dataset shapes3d --image-size 16 --data-seed 0 --n-train 10000 --n-val 1000 --n-test 1000"
G="--glow $out/glow.safetensors --fidelity-images 32 --threads 2"
cd "$out"
[ -f glow.safetensors ] || "$bin/lassi-regulator" train-glow $DATA --levels 2 --depth 4 --hidden 64 --steps 600 \
    --batch-size 32 --lr 1e-3 --warmup 100 --seed 0 --threads 2 --out glow.safetensors
define() { local name=$1; shift; [ -f "$name.safetensors" ] || "$bin/lassi-regulator" define $G $DATA "$@" --out "$name.safetensors"; }
define avg-pairs --attribute orientation --epsilon 1 --vectors pairs
define avg-halves --attribute orientation --epsilon 1 --vectors halves
define avg-pairs-scale --attribute orientation --epsilon 1 --vectors pairs --condition-on scale
define perp-10 --attribute orientation --epsilon 10 --method perpendicular
define ram-1 --attribute orientation --epsilon 1 --method ramaswamy --task object_hue
# discover's biased classifier: a naive encoder of object_hue on an orientation-correlated split
[ -f naive.safetensors ] || "$bin/lassi-producer" train --spec avg-pairs.safetensors $DATA \
    --correlate orientation:object_hue:0.9 --task object_hue --hidden 1024,512 --k 256 --epochs 2 \
    --batch-size 250 --lambda-adv 0 --threads 2 --quiet --out naive.safetensors
define discover-10 --epsilon 10 --method discover --task object_hue --classifier naive.safetensors
