"""``lassi-consumer``: a thin click layer over the Python API of lassi.consumer.

Imports stay lazy: ``predict`` needs only numpy and onnxruntime, never torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lassi.spec.runtime import cli_options as option
from lassi.spec.runtime.cli import role_group, set_threads, trusted_inputs
from lassi.spec.runtime.outputs import check_outputs, checkpoint_of

if TYPE_CHECKING:
    import torch

from lassi.consumer import TOOL

main = role_group(
    TOOL,
    "The consumer: trains a noise-augmented classifier on representations and verifies individual fairness.",
)

TRAIN = "lassi.consumer.classifier:train_consumer_classifier"
VERIFY = "lassi.consumer.verification:verify"
PREDICT = "lassi.consumer.predict:predict_bundle"

bundle_option = click.option(
    "--bundle",
    type=option.FILE,
    required=True,
    help="Representation bundle (from lassi-producer encode).",
)


@main.command("train")
@trusted_inputs("bundle")
@bundle_option
@click.option("--task", required=True, help="Label to predict (any label the bundle carries).")
@option.out("Classifier artifact to write.")
@click.option(
    "--sigma",
    default="1.0",
    show_default=True,
    help="Training noise sigma_cls (also used for smoothing), or 'auto': sweep --sigma-grid and "
    "take the sigma with the highest certified fairness on --val-bundle among those within "
    "--max-accuracy-loss of the best accuracy (paper Sec. 5).",
)
@click.option(
    "--sigma-grid",
    default="1,2.5,5,10,25,50",
    show_default=True,
    help="--sigma auto: the sigma_cls values tried (paper Sec. 5).",
)
@click.option(
    "--max-accuracy-loss",
    type=float,
    default=0.02,
    show_default=True,
    help="--sigma auto: largest accuracy loss against the best sigma of the grid.",
)
@click.option(
    "--val-bundle",
    type=option.FILE,
    default=None,
    help="--sigma auto: certified validation bundle (encode --split val --certify); without it "
    "the choice uses accuracy only (the largest sigma within the loss).",
)
@click.option("--sweep-n0", type=int, default=100, show_default=True, help="--sigma auto: n0.")
@click.option("--sweep-n", type=int, default=1_000, show_default=True, help="--sigma auto: n.")
@click.option(
    "--sweep-alpha", type=float, default=0.001, show_default=True, help="--sigma auto: alpha."
)
@option.model(TRAIN, "architecture", type=click.Choice(["linear", "mlp"]))
@option.model(TRAIN, "hidden", type=int, help="Hidden width of the MLP.")
@click.option(
    "--epochs",
    type=int,
    default=None,
    help="Train exactly this many epochs. Default: to convergence (at most enough epochs for "
    "2000 steps, within 10..200, from the bundle's size; early stopping once the loss under "
    "noise on the --val-fraction held out of the bundle has not improved by 1 % for 5 epochs "
    "(at least 100 steps), "
    "the best epoch kept).",
)
@option.model(TRAIN, "batch_size", type=int)
@option.model(TRAIN, "lr", type=float)
@option.model(TRAIN, "seed", type=int)
@option.model(TRAIN, "val_fraction", type=float)
@option.compute
@option.quiet
def train_command(
    bundle: Path,
    task: str,
    out: Path,
    sigma: str,
    sigma_grid: str,
    max_accuracy_loss: float,
    val_bundle: Path | None,
    sweep_n0: int,
    sweep_n: int,
    sweep_alpha: float,
    seed: int,
    threads: int | None,
    device: torch.device,
    quiet: bool,
    **options: Any,
) -> None:
    """Train the noise-augmented classifier C_L on a bundle's representations."""
    from lassi.consumer.classifier import train_consumer_classifier
    from lassi.spec import UsageError

    auto = sigma.strip().lower() == "auto"
    try:
        value = 0.0 if auto else float(sigma)
    except ValueError:
        raise UsageError(None, f"--sigma must be a number or 'auto', got {sigma!r}") from None
    epochs, batch_size, lr = options["epochs"], options["batch_size"], options["lr"]
    if not (auto or value > 0) or (epochs is not None and epochs < 1) or batch_size < 1 or not lr > 0:
        raise UsageError(None, "need --sigma > 0, --epochs >= 1, --batch-size >= 1 and --lr > 0")
    from lassi.consumer.sigma_sweep import check_sigma, parse_grid

    _ = parse_grid(sigma_grid) if auto else check_sigma(value)  # before any training
    if val_bundle is not None and not auto:
        raise UsageError(val_bundle, "--val-bundle applies to --sigma auto only")
    sweep_png = out.with_name(f"{out.stem}.sigma-sweep.png") if auto else None
    check_outputs([out, sweep_png], inputs=[bundle, val_bundle])
    set_threads(threads)
    selection = None
    warn = lambda text: click.echo(text, err=True)  # noqa: E731
    if auto:
        from lassi.consumer.sigma_sweep import (
            choice_line,
            parse_grid,
            plot_sweep,
            sweep_sigma,
            sweep_table,
        )

        grid = parse_grid(sigma_grid)
        value, selection = sweep_sigma(bundle, task, grid, max_accuracy_loss, val_bundle, options,
                                       sweep_n0, sweep_n, sweep_alpha, seed, warn=warn)  # fmt: skip
        click.echo(sweep_table(selection, value))
        png = plot_sweep(selection, value, sweep_png)
        click.echo(f"{choice_line(selection, value)}; plot {png}")
    # with --sigma auto the classifier is the sweep's (same seed and options): its accuracy and
    # warnings are the table's and the sweep's, so no other figure is printed beside them
    train_consumer_classifier(
        bundle, task, out, value, seed=seed, progress=not quiet, sigma_selection=selection,
        device=device, warn=(lambda _text: None) if auto else warn,
        report=not quiet and not auto, **options,
    )  # fmt: skip
    click.echo(f"wrote {out}")


@main.command("verify")
@trusted_inputs("bundle", regulator=("spec_path",))
@click.option("--classifier", "classifier_path", type=option.FILE, required=True)
@click.option(
    "--bundle", type=option.FILE, required=True, help="Certified representation bundle (encode --certify)."
)
@option.out("Report artifact (.safetensors; .json/.md/.png beside it).")
@click.option(
    "--spec",
    "spec_path",
    type=option.FILE,
    default=None,
    help="The regulator's similarity spec: bind the certificate to its hash, epsilon and policy.",
)
@option.model(
    VERIFY, "n0", type=int,
    help="Selection draws per sample: PREDICT's prediction (the report's) and CERTIFY's guess.",
)  # fmt: skip
@option.model(VERIFY, "n", type=int, help="Estimation draws per sample: the bound on p_A and R.")
@option.model(VERIFY, "alpha", type=float)
@option.model(VERIFY, "seed", type=int)
@option.model(VERIFY, "batch_size", type=int)
@click.option(
    "--sequential",
    is_flag=True,
    help="Stop the estimation draws as soon as an anytime-valid test decides R > r_CS "
    "(at most --n draws).",
)
@option.json("Print the summary as JSON on stdout.")
@option.html(
    " of the figures (per-sample R, r_CS, status, class names; the images are on the "
    "regulator's audit page)"
)
@option.per_sample
@option.quiet
def verify_command(
    classifier_path: Path,
    bundle: Path,
    out: Path,
    spec_path: Path | None,
    as_json: bool,
    html: Path | None,
    threads: int | None,
    quiet: bool,
    **settings: Any,
) -> None:
    """Certify each sample: randomized smoothing around z_CS, fair iff r_CS < R."""
    from lassi.consumer.report import report_sidecars, summary_markdown
    from lassi.consumer.verification import verify
    from lassi.spec import UsageError
    from lassi.spec.contract.binding import binding_note, coverage_note

    n0, n, alpha, batch_size = (settings[name] for name in ("n0", "n", "alpha", "batch_size"))
    if n0 < 1 or n < 1 or not 0 < alpha < 1 or batch_size < 1:
        raise UsageError(None, "need --n0 >= 1, --n >= 1, 0 < --alpha < 1 and --batch-size >= 1")
    outputs = [out, *report_sidecars(out).values(), checkpoint_of(out), html]
    check_outputs(outputs, inputs=[classifier_path, bundle, spec_path])
    with option.running(threads) as runner:
        report = verify(
            classifier_path, bundle, out, progress=not quiet and not as_json, executor=runner,
            warn=lambda text: click.echo(text, err=True), spec_path=spec_path, **settings,
        )  # fmt: skip
    scope = report.meta.scope
    notes = [binding_note(scope), coverage_note(scope)]
    note = "\n".join(line for line in notes if line)
    if html is not None:
        from lassi.consumer.report_page import write_report_page

        write_report_page(report, html)
        click.echo(f"wrote {html}", err=True)
    if as_json:
        click.echo(note, err=True)
        click.echo(json.dumps(report.meta.summary.model_dump(mode="json"), indent=2))
        return
    click.echo(summary_markdown(report.meta))
    click.echo(note)
    sidecars = report_sidecars(out)
    click.echo(f"wrote {out}, {sidecars['json']}, {sidecars['md']}, {sidecars['png']}")


@main.command("export-onnx")
@click.option("--classifier", "classifier_path", type=option.FILE, required=True)
@option.out("ONNX file to write.")
@option.threads
def export_onnx_command(classifier_path: Path, out: Path, threads: int | None) -> None:
    """Export C_L as ONNX (input z [batch, k] -> logits), provenance in its metadata."""
    from lassi.consumer.onnx_export import export_classifier

    check_outputs([out], inputs=[classifier_path])
    set_threads(threads)
    error = export_classifier(classifier_path, out)
    click.echo(f"wrote {out} (max |onnxruntime - torch| = {error:.2e})")


@main.command("predict")
@trusted_inputs("bundle")
@click.option(
    "--onnx", "onnx_path", type=option.FILE, required=True, help="Classifier ONNX (from export-onnx)."
)
@bundle_option
@option.model(PREDICT, "n", type=int, help="Noise draws per sample (PREDICT's own, not verify's).")
@option.model(PREDICT, "alpha", type=float, help="Level of PREDICT's test of the top two classes (it abstains when they cannot be told apart).")
@option.model(PREDICT, "seed", type=int, help="Seed of the per-sample noise streams.")
@click.option("--limit", type=int, default=None, help="Only the bundle's first LIMIT samples.")
@click.option("--gpu", is_flag=True, help="Use CUDA if the installed onnxruntime offers it.")
@option.json("Print per-sample predictions as JSON.")
@option.threads
def predict_command(
    onnx_path: Path,
    bundle: Path,
    n: int,
    alpha: float,
    seed: int,
    limit: int | None,
    gpu: bool,
    as_json: bool,
    threads: int | None,
) -> None:
    """Smoothed predictions with onnxruntime alone (no torch); prints the provider used.

    PREDICT (Cohen et al.) around each sample's z_CS (z where center smoothing abstained or the
    bundle is not certified) on --n noise draws of its own: numpy's generator, where verify draws
    torch's on its --n0 selection draws. So a sample's prediction here can differ from the one in
    verify's report (most often near a tie, one abstaining and the other not); both are valid
    PREDICTs, and the auditable prediction, the one a certificate speaks for, is the report's
    (lassi-consumer verify; per sample in REPORT.json).
    """
    from lassi.consumer.predict import predict_bundle
    from lassi.spec import UsageError

    if n < 1 or not 0 < alpha < 1:
        raise UsageError(None, "need --n >= 1 and 0 < --alpha < 1")
    rows, provider = predict_bundle(
        onnx_path, bundle, n=n, alpha=alpha, seed=seed, prefer_gpu=gpu, limit=limit,
        threads=threads,
    )
    click.echo(f"onnxruntime provider: {provider}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    abstained = sum(row["prediction"] is None for row in rows)
    for row in rows:
        name = f"\t{row['file']}" if "file" in row else ""
        click.echo(f"{row['id']}{name}\t{'abstain' if row['prediction'] is None else row['prediction']}")
    click.echo(f"{len(rows)} samples, {abstained} abstained", err=True)


if __name__ == "__main__":
    main()
