"""The coverage table of benchmarks/coverage_methods.sh: each spec's coverage record as one row.

Usage: python benchmarks/coverage_table.py OUT_DIR RESULTS_JSON (the results page's table format).
"""
import json
import subprocess
import sys
from pathlib import Path

from lassi.spec import SimilaritySpec, read_artifact

root = Path(sys.argv[1])
rows = []
specs = [
    ("average, pairs (the authors' 3D Shapes set)", "avg-pairs"),
    ("average, halves (one high-minus-low vector)", "avg-halves"),
    ("average, pairs + halves per scale (--condition-on scale)", "avg-pairs-scale"),
    ("perpendicular (Denton et al.)", "perp-10"),
    ("ramaswamy (task object_hue)", "ram-1"),
    ("discover (biased naive encoder of object_hue)", "discover-10"),
]
for label, name in specs:
    spec = read_artifact(root / f"{name}.safetensors", expect=SimilaritySpec).meta
    c = spec.coverage
    acc = None
    if spec.method is not None:
        acc = round(spec.method.boundaries[0].val_accuracy, 3)
    rows.append([label, c.m, spec.epsilon, round(c.latent_residual, 3), round(c.latent_residual_span, 3),
                 round(c.pixel_ratio, 3), round(c.on_boundary, 3), acc])
    n_images, n_siblings = c.n_images, c.n_siblings
commit = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
out = {
    "title": "Which similarity set contains the real orientation siblings? (attribute-vector methods, 3D Shapes)",
    "order": 62,
    "intro": "The regulator's coverage measurement for each attribute-vector method on one small Glow: "
    "how far the point of the set closest to each ground-truth orientation sibling (at least 20 degrees away) "
    "falls short of it, in the Glow latent (1 = the set holds nothing of the move, 0 = all of it) and in pixels.",
    "columns": ["set (define --method ...)", "vectors m", "eps", "latent residual (ball)", "latent residual (span)",
                "pixel ratio", "share of t* on the sphere", "linear classifier val. accuracy"],
    "rows": rows,
    "provenance": {
        "command": "bash benchmarks/coverage_methods.sh OUT && python benchmarks/coverage_table.py OUT docs/results/coverage_methods.json",
        "commit": commit,
        "results_file": "docs/results/coverage_methods.json (from the coverage records of the specs in OUT)",
        "hardware": "CPU only: 2 cores shared with other jobs, torch 2.13.0 (CPU build), Python 3.11",
    },
    "notes": [
        f"Coverage over {n_images} test images and {n_siblings} siblings; 16x16 images and a small Glow "
        "(2 levels x 4 steps, hidden 64, 600 steps): a comparison of the methods on one Glow, not the paper's scale.",
        "eps as the authors use each method: 1 for the average difference and Ramaswamy et al., 10 for the unit-norm "
        "perpendicular and discover vectors.",
        "The Glow is weak (validation bits/dim 2.19 at 16x16): no set reaches a latent residual of 0.5; the "
        "largest set (pairs + per-scale halves, m = 57) leaves the least outside. Table 2 with the best set is not run.",
        "The classifier accuracy is the linear boundary of orientation (high half vs low half of its values) on the "
        "latent; for discover, the task's (object_hue) boundary, the first known normal.",
    ],
}
Path(sys.argv[2]).write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(rows, indent=1))
