"""The ablation (the paper's Table 1 design, on 3D Shapes): for each sensitive set, the baseline,
adversarial and adversarial+contrastive encoders (paper Sec. 4.2) and the authors'
data-augmentation baseline (task loss only, on random points of the set as well), each with the
consumer's sigma_cls swept; per row the sigma_cls with the highest certified fairness among those
within ``accuracy_slack`` of the row's best accuracy (paper Sec. 5.1: "the sigma_cls which maximizes
the individual fairness without major sacrifice in accuracy")."""

from __future__ import annotations

import argparse
from pathlib import Path

from lassi.experiments.workspace import Workspace, data_config


def variant_name(ws: Workspace, args: argparse.Namespace) -> str:
    """The run folder's suffix for settings differing from the first ablation's (halves, the
    default epochs and certificate, the best validation epoch), which keeps its names."""
    variant = (
        "" if args.vectors == "halves" and args.epochs == ws.settings.encoder.epochs
        else f"-{args.vectors}-epochs{args.epochs}"
    )  # fmt: skip
    if args.cert != ws.settings.cert:
        variant += f"-cert{args.cert.n0}x{args.cert.n}"
    if args.keep != "best":
        variant += f"-keep{args.keep}"
    return variant


def ablation(ws: Workspace, args: argparse.Namespace) -> dict:
    """Every sensitive set of ``args.sensitive`` with every method of ``args.methods`` (default:
    the settings' [methods]); the results dict the CLI writes (with the sigma_cls figure when
    every sensitive set and method ran)."""
    variant = variant_name(ws, args)
    folder = ws.out / f"ablation{variant}"
    data = data_config(args.glow, ws.settings.producer.correlate, ws.data_root)
    table = []
    methods = list(getattr(args, "methods", None) or ws.settings.methods)
    for sensitive in args.sensitive:
        attributes = sensitive.split("+")
        spec = ws.spec_for(args.glow, attributes, folder, args.vectors)
        for method in methods:
            run = folder / f"{sensitive}-{method}"
            _, train, test = ws.producer_run(
                spec, data, method, 0, run, args.test, epochs=args.epochs, cert=args.cert,
                keep=args.keep,
            )  # fmt: skip
            sweep = [
                ws.consumer_run(spec, train, test, "object_hue", s, run, 0) | {"sigma": s}
                for s in ws.settings.ablation.sigmas
            ]
            best_acc = max(r["accuracy"] for r in sweep)
            slack = ws.settings.ablation.accuracy_slack
            eligible = [r for r in sweep if r["accuracy"] >= best_acc - slack]
            chosen = max(eligible, key=lambda r: r["certified_fairness"])
            table.append(
                {"attributes": attributes, "method": method, "chosen": chosen, "sweep": sweep}
            )
            print(
                f"{attributes} {method}: sigma {chosen['sigma']} acc {chosen['accuracy']:.3f} "
                f"cert {chosen['certified_fairness']:.3f}"
            )
    lines = [
        "| sensitive | method | sigma_cls | accuracy % | certified fair % | fair & accurate % |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in table:
        c = row["chosen"]
        lines.append(
            f"| {'+'.join(row['attributes'])} | {row['method']} | {c['sigma']} | {100 * c['accuracy']:.1f} "
            f"| {100 * c['certified_fairness']:.1f} | {100 * c['certified_fair_and_accurate']:.1f} |"
        )
    every_set = list(args.sensitive) == list(ws.settings.ablation.sensitive_sets)
    every_method = methods == list(ws.settings.methods)
    name = "results" + ("" if every_set else "-" + "-".join(args.sensitive))
    name += "" if every_method else "-" + "-".join(methods)
    return {
        "rows": table,
        "markdown": "\n".join(lines),
        "folder": folder.name,
        "results_file": f"{name}.json",
        "figure": f"ablation_sigma{variant}.png" if every_set and every_method else None,
    }


def plot_sigma(results: dict, path: Path) -> None:
    """Certified fairness (solid) and accuracy (dotted) against sigma_cls for every ablation row,
    one panel per sensitive set (docs/figures/ablation_sigma.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(tuple(row["attributes"]) for row in results["rows"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(4 * len(sets), 3.8), dpi=110, sharey=True)
    axes = [axes] if len(sets) == 1 else list(axes)
    for ax, attributes in zip(axes, sets, strict=True):
        for row in results["rows"]:
            if tuple(row["attributes"]) == attributes:
                sigmas = [r["sigma"] for r in row["sweep"]]
                ax.plot(
                    sigmas,
                    [100 * r["certified_fairness"] for r in row["sweep"]],
                    marker="o",
                    label=row["method"],
                )
                ax.plot(
                    sigmas,
                    [100 * r["accuracy"] for r in row["sweep"]],
                    linestyle=":",
                    color=ax.lines[-1].get_color(),
                )
        ax.set_xscale("log")
        ax.set_xlabel("sigma_cls")
        ax.set_title("sensitive: " + " + ".join(attributes))
    axes[0].set_ylabel("certified fair % (solid), accuracy % (dotted)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
