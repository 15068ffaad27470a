"""Choosing sigma_cls for the user (``lassi-consumer train --sigma auto``).

Paper Sec. 5 trains C_L for every sigma_cls in {1, 2.5, 5, 10, 25, 50} and reports "the value for
the sigma_cls which maximizes the individual fairness without major sacrifice in accuracy". Here
"major" is an explicit option, the largest accuracy loss against the best sigma of the grid
(``max_loss``). For every sigma of the grid a classifier is trained on the train part of the bundle;
then

- with a certified validation bundle (``val_bundle``): each is verified on it (randomized
  smoothing around z_CS, :func:`lassi.consumer.verification.verify`), and the sigma with the
  highest certified fairness among those whose accuracy is within ``max_loss`` of the best wins
  (ties: the smaller sigma);
- without one: accuracy only (the noisy accuracy on the held-out validation part of the train
  bundle); the largest sigma within ``max_loss`` of the best wins, since larger sigma_cls gives
  larger certified radii R (Cohen et al. 2019) at equal confidence. The choice says so.
- with one on which no sigma certifies any sample: the accuracy rule, flagged as such
  (``nothing_certified``), with the verification's warnings (why, in numbers) for the chosen sigma.

The table's accuracy is one figure per row, named in its header: the smoothed accuracy (PREDICT,
abstentions as errors) on the validation bundle, or the held-out accuracy under noise. The final
classifier is trained with the same seed and options as the sweep's, so it is the chosen row's.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lassi.spec import ClassifierCard, RepresentationBundle, UsageError, read_artifact
from lassi.spec.contract.models import SigmaSelection, SigmaSweepRow

PAPER_GRID = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0)
# sigma_cls is the std of Gaussian noise added to float32 representations (paper Sec. 5 tries
# 1..50): far above any representation's scale the classifier sees only noise, and near
# float32's range the noise and the radii R = sigma_cls * Phi^-1(p) overflow to inf.
MAX_SIGMA = 1e6
MAX_GRID = 32  # one classifier is trained (and verified) per value


def check_sigma(value: float, option: str = "--sigma") -> float:
    """``value`` if it is a usable sigma_cls (finite, in (0, MAX_SIGMA]), else a one-line
    UsageError naming ``option`` (checked before any training)."""
    if not math.isfinite(value) or not 0 < value <= MAX_SIGMA:
        raise UsageError(
            None,
            f"{option} must be a finite number in (0, {MAX_SIGMA:g}] (the std of the noise "
            f"added to the representations), got {value!r}",
        )
    return value


def parse_grid(text: str) -> list[float]:
    """``"1,2.5,5"`` → [1.0, 2.5, 5.0]; a one-line UsageError for anything else (NaN, inf,
    non-positive or absurdly large values, more than ``MAX_GRID`` of them), before any sweep."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(None, f"--sigma-grid must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise UsageError(None, f"--sigma-grid needs at least one value, got {text!r}")
    for value in values:
        check_sigma(value, "--sigma-grid value")
    grid = sorted(set(values))
    if len(grid) > MAX_GRID:
        raise UsageError(
            None, f"--sigma-grid has {len(grid)} values, at most {MAX_GRID} (one training each)"
        )
    return grid


def nothing_certified(rows: list[SigmaSweepRow]) -> bool:
    """Whether rows with certified fairness measured all have 0 %."""
    return all(row.certified_fairness == 0 for row in rows)


def choose(rows: list[SigmaSweepRow], max_loss: float, certified: bool) -> SigmaSweepRow:
    """The chosen row (see the module docstring); all-zero certified rows: the accuracy rule."""
    best = max(row.accuracy for row in rows)
    eligible = [row for row in rows if row.accuracy >= best - max_loss - 1e-12]
    if certified and not nothing_certified(rows):
        return max(eligible, key=lambda row: (row.certified_fairness or 0.0, -row.sigma))
    return max(eligible, key=lambda row: row.sigma)


def sweep_sigma(
    bundle: Path,
    task: str,
    grid: list[float],
    max_loss: float,
    val_bundle: Path | None,
    train_options: dict[str, Any],
    n0: int,
    n: int,
    alpha: float,
    seed: int,
    warn: Callable[[str], None] | None = None,
) -> tuple[float, SigmaSelection]:
    """Train (and with ``val_bundle`` verify) one classifier per sigma; return the chosen sigma
    and the record of the sweep. ``warn``: receives the chosen sigma's verification warnings
    (``VerificationReport.warnings``: why little or nothing certified, accuracy against the
    majority class)."""
    from lassi.consumer.classifier import train_consumer_classifier
    from lassi.consumer.verification import verify

    if not 0 <= max_loss <= 1:  # (NaN fails this too)
        raise UsageError(None, f"--max-accuracy-loss must be in [0, 1], got {max_loss}")
    grid = [check_sigma(sigma, "--sigma-grid value") for sigma in grid]
    val_sha = None
    if val_bundle is not None:
        val = read_artifact(val_bundle, expect=RepresentationBundle)
        if not val.meta.certified or task not in val.meta.label_names:
            raise UsageError(
                val_bundle, f"must be a certified bundle (encode --certify) with labels {task!r}"
            )
        val_sha = val.sha256
    rows, warnings = [], {}
    with tempfile.TemporaryDirectory(prefix="sigma-sweep-") as folder:
        for sigma in grid:
            path = Path(folder) / f"classifier-{sigma}.safetensors"
            train_consumer_classifier(
                bundle, task, path, sigma, seed=seed, progress=False, warn=warnings.setdefault(
                    sigma, []).append, **train_options,
            )  # fmt: skip
            card = read_artifact(path, expect=ClassifierCard).meta
            if val_bundle is None:
                accuracy = card.training.val_accuracy_noisy
                if accuracy is None:
                    raise UsageError(None, "--sigma auto without --val-bundle needs --val-fraction > 0")
                rows.append(SigmaSweepRow(sigma=sigma, accuracy=accuracy))
                continue
            report = verify(
                path, val_bundle, Path(folder) / f"report-{sigma}.safetensors",
                n0=n0, n=n, alpha=alpha, seed=seed, progress=False,
            )  # fmt: skip
            summary = report.meta.summary
            warnings[sigma] = [f"warning: {text}" for text in report.meta.warnings]
            rows.append(
                SigmaSweepRow(
                    sigma=sigma,
                    accuracy=summary.accuracy or 0.0,
                    certified_fairness=summary.certified_fairness,
                )
            )
    certified = val_bundle is not None
    chosen = choose(rows, max_loss, certified)
    method = "accuracy" if not certified else (
        "nothing_certified" if nothing_certified(rows) else "certified"
    )
    selection = SigmaSelection(
        method=method, max_accuracy_loss=max_loss, val_bundle=val_sha, rows=rows
    )
    for text in warnings.get(chosen.sigma, []) if warn is not None else []:
        warn(f"{text} (sigma_cls = {chosen.sigma:g})")
    return chosen.sigma, selection


ACCURACY_OF = {
    "certified": "smoothed accuracy on --val-bundle",
    "nothing_certified": "smoothed accuracy on --val-bundle",
    "accuracy": "held-out accuracy under noise",
}


def choice_line(selection: SigmaSelection, chosen: float) -> str:
    """What was chosen and on which grounds, with the chosen row's accuracy (the table's)."""
    row = next(row for row in selection.rows if row.sigma == chosen)
    accuracy = f"{ACCURACY_OF[selection.method]} {100 * row.accuracy:.1f} %"
    loss = (
        f"the largest sigma within {100 * selection.max_accuracy_loss:g} accuracy points of the best"
    )
    if selection.method == "certified":
        fair = 100 * (row.certified_fairness or 0.0)
        return f"chose sigma_cls = {chosen:g} (certified fairness {fair:.1f} %, {accuracy})"
    if selection.method == "nothing_certified":
        return (
            f"chose sigma_cls = {chosen:g} on accuracy only ({loss}, {accuracy}): no sigma of the "
            "grid certified any sample of --val-bundle (0 % in every row); see the warnings for why"
        )
    return (
        f"chose sigma_cls = {chosen:g} on accuracy only ({loss}, {accuracy}): no --val-bundle, "
        "certified fairness not measured"
    )


def sweep_table(selection: SigmaSelection, chosen: float) -> str:
    """The sweep as a markdown table; the chosen row is marked; the header names the accuracy."""
    accuracy = ACCURACY_OF[selection.method]
    lines = [f"| sigma_cls | {accuracy} | certified fairness | chosen |", "| --- | --- | --- | --- |"]
    for row in selection.rows:
        fair = "n/a" if row.certified_fairness is None else f"{100 * row.certified_fairness:.1f} %"
        mark = "<-" if row.sigma == chosen else ""
        lines.append(f"| {row.sigma:g} | {100 * row.accuracy:.1f} % | {fair} | {mark} |")
    return "\n".join(lines)


def plot_sweep(selection: SigmaSelection, chosen: float, path: Path) -> Path:
    """PNG of accuracy (and certified fairness) against sigma_cls, chosen sigma marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lassi.spec import atomic_path

    sigmas = [row.sigma for row in selection.rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sigmas, [row.accuracy for row in selection.rows], "o-", label="accuracy")
    if selection.method == "certified":
        fair = [row.certified_fairness or 0.0 for row in selection.rows]
        ax.plot(sigmas, fair, "s-", label="certified fairness")
    ax.axvline(chosen, color="grey", linestyle="--", label=f"chosen sigma_cls = {chosen:g}")
    ax.set_xscale("log")
    ax.set_xlabel("sigma_cls")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"sigma_cls sweep ({selection.method} choice)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
