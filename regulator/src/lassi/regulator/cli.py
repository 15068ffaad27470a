"""``lassi-regulator``: a thin click layer over the Python API of lassi.regulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lassi.regulator import TOOL
from lassi.regulator.data_config import dataset_config_from_options, dataset_options
from lassi.spec import CenterSmoothingParams, GlowConfig, UsageError
from lassi.spec.runtime import cli_options as option
from lassi.spec.runtime.cli import role_group, set_threads, trusted_inputs, validated
from lassi.spec.runtime.outputs import check_outputs, checkpoint_of

TRAINING = "lassi.regulator.training:GlowTrainConfig"
METHOD = "lassi.regulator.attribute_methods:MethodConfig"
DEFINE = "lassi.regulator.similarity:define_spec"
SHOW = "lassi.regulator.show:show_spec"
AUDIT = "lassi.regulator.audit:audit_bundle"

allow_outside_option = click.option(
    "--allow-symlinks-outside-root",
    "allow_outside",
    is_flag=True,
    help="Read symbolic links that lead out of --data-root (a link farm).",
)
"""The opt-in to links leaving --data-root of the commands that read another party's data
(``show``, ``audit``); the data options of the others declare it with the rest."""

main = role_group(
    TOOL,
    "The regulator: trains the Glow flow, computes attribute vectors, fixes epsilon and writes the similarity spec.",
)


@main.command("train-glow")
@dataset_options
@option.out("Glow artifact to write.")
@option.model(GlowConfig, "n_levels", "--levels", help="Glow blocks L.")
@option.model(GlowConfig, "n_steps", "--depth", help="Flow steps per block K.")
@option.model(GlowConfig, "hidden", help="Coupling network width.")
@option.model(GlowConfig, "coupling")
@option.model(GlowConfig, "n_bits", help="Bits per colour channel.")
@option.model(TRAINING, "steps", type=int, help="Optimisation steps.")
@option.model(TRAINING, "batch_size", type=int)
@option.model(TRAINING, "lr", type=float)
@option.model(TRAINING, "warmup_steps", "--warmup", type=int, help="Linear LR warm-up steps.")
@option.model(TRAINING, "seed", type=int)
@option.model(TRAINING, "checkpoint_every", type=int)
@option.compute
@option.quiet
def train_glow_command(
    out: Path, threads: int | None, device: Any, quiet: bool, **options: Any
) -> None:
    """Train a Glow on the images; resumes from OUT.ckpt if a run was interrupted."""
    from lassi.regulator.training import GlowTrainConfig, train_glow

    check_outputs([out, checkpoint_of(out), out.with_name(out.stem + ".samples.png")])
    data = dataset_config_from_options(options, image_size=None)
    flow = validated(
        GlowConfig,
        "flow",
        image_size=data.image_size,
        **{k: options.pop(k) for k in ("n_levels", "n_steps", "hidden", "coupling", "n_bits")},
    )
    config = validated(GlowTrainConfig, "training", flow=flow, data=data, **options)
    set_threads(threads)
    train_glow(config, out, progress=not quiet, device=device)


@main.command("import-glow")
@click.argument("checkpoint", type=option.FILE)
@option.out("Glow artifact to write.")
@click.option(
    "--image-size",
    type=int,
    required=True,
    help="Image size the checkpoint was trained at (not recorded in it; sets the top prior).",
)
@option.model(GlowConfig, "n_bits", help="Bits per colour channel it was trained with.")
def import_glow_command(checkpoint: Path, out: Path, image_size: int, n_bits: int) -> None:
    """Import a rosinality/glow-pytorch Glow state dict (the LASSI authors' released Glows), a
    .pt/.pth read with torch.load(weights_only=True) or a .safetensors with the same keys."""
    from lassi.regulator.glow.rosinality import import_glow

    check_outputs([out], inputs=[checkpoint])
    import_glow(checkpoint, out, image_size=image_size, n_bits=n_bits)
    click.echo(f"wrote {out}")


@main.command("define")
@click.option(
    "--glow", "glow_path", type=option.FILE, required=True, help="Glow artifact (from train-glow)."
)
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    help="Sensitive attribute (repeat for several: the l2 ball ||t|| <= eps); required except "
    "with --method discover.",
)
@option.model(CenterSmoothingParams, "epsilon", help="Radius of the similarity ball in t-space.")
@dataset_options
@click.option(
    "--max-images",
    type=int,
    default=None,
    help="Use at most this many train images for the vectors.",
)
@option.model(
    DEFINE,
    "vectors",
    type=click.Choice(["pairs", "halves"]),
    help="Multi-valued attributes: one vector per (low value, high value) pair, as the authors "
    "do for 3D Shapes (orientation: 49), or one high-half minus low-half vector. Binary "
    "attributes have one vector either way.",
)
@click.option(
    "--condition-on",
    "given",
    default=None,
    metavar="ATTRIBUTE",
    help="Also give each sensitive attribute one high-half minus low-half vector per value of "
    "ATTRIBUTE, computed over the images with that value only (3D Shapes: --condition-on scale "
    "adds orientation's move for each of the 8 object sizes). ATTRIBUTE must not be sensitive.",
)
@click.option(
    "--method",
    type=click.Choice(["average", "perpendicular", "ramaswamy", "discover"]),
    default="average",  # MethodConfig's average_diff, by its command-line name
    show_default=True,
    help="How the vectors are computed: average difference of latent means (the paper's); "
    "perpendicular: the unit normal of a linear classifier of the attribute on the latent "
    "(Denton et al.); ramaswamy: that normal made orthogonal to --task's, scaled by the mean "
    "distance to the mirrored latent (Ramaswamy et al.); discover: 3 directions along which "
    "the --classifier's output changes most, orthogonal to --task's normal (Li & Xu). "
    "--vectors and --condition-on apply to average only. Perpendicular and discover vectors "
    "have unit norm: the authors certify them at --epsilon 10 (sigma_enc 6.5), the others at 1.",
)
@click.option("--task", default=None, help="ramaswamy, discover: the task attribute.")
@option.model(
    METHOD,
    "normalize",
    "--normalize/--no-normalize",
    type=bool,
    help="perpendicular: unit-norm vectors (ramaswamy's are scaled, discover's unit).",
)
@option.model(METHOD, "epochs", "--boundary-epochs", type=int, help="Linear classifiers: epochs.")
@option.model(METHOD, "lr", "--boundary-lr", "boundary_lr", type=float)
@option.model(METHOD, "batch_size", "--boundary-batch-size", type=int)
@option.model(METHOD, "seed", type=int, help="Learned methods' seed.")
@click.option(
    "--classifier",
    type=option.FILE,
    default=None,
    help="discover: the biased classifier, a lassi encoder artifact (E_L and its auxiliary head, "
    "e.g. lassi-producer train --lambda-adv 0 on the task) whose input is this Glow's latent.",
)
@option.model(METHOD, "class_index", type=int, help="discover: the class whose probability moves.")
@option.model(METHOD, "directions", type=int, help="discover: directions.")
@option.model(METHOD, "iterations", "--discover-iterations", type=int)
@option.model(METHOD, "discover_batch_size", type=int)
@option.model(METHOD, "discover_lr", type=float)
@option.model(METHOD, "lambda_orth", type=float, help="discover: orthogonality weight.")
@click.option(
    "--discover-step",
    "step",
    type=float,
    default=None,
    help="discover: walk -s, 0, +s along the normal (default eps/2: the authors walk 5 and "
    "certify at eps 10).",
)
@option.model(
    DEFINE,
    "fidelity_images",
    type=int,
    help="3D Shapes: test images for the fidelity and coverage figures.",
)
@option.out("Similarity spec to write.")
@click.option(
    "--max-alpha",
    type=float,
    default=None,
    help="Policy: largest alpha1 + alpha2 a producer's center smoothing may use.",
)
@click.option("--sigma-enc-min", type=float, default=None, help="Policy: smallest sigma_enc.")
@click.option("--sigma-enc-max", type=float, default=None, help="Policy: largest sigma_enc.")
@click.option("--min-n", type=int, default=None, help="Policy: fewest center-smoothing samples n.")
@option.compute
@option.quiet
def define_command(
    glow_path: Path,
    attributes: tuple[str, ...],
    epsilon: float,
    out: Path,
    max_images: int | None,
    vectors: str,
    given: str | None,
    method: str,
    fidelity_images: int,
    threads: int | None,
    device: Any,
    quiet: bool,
    **options: Any,
) -> None:
    """Compute attribute vectors (--method) and write the similarity spec.

    The policy options are recorded in the spec; ``audit`` and ``lassi-consumer verify --spec``
    refuse certificates that break them.
    """
    from lassi.regulator.attribute_methods import MethodConfig
    from lassi.regulator.similarity import define_spec
    from lassi.spec.contract.models import CertificationPolicy

    settings = {name: options.pop(name) for name in MethodConfig.model_fields if name in options}
    method_config = validated(
        MethodConfig,
        "method",
        method="average_diff" if method == "average" else method,
        lr=options.pop("boundary_lr"),  # not "lr": the frame checks --lr as a training step size
        **settings,
    )
    method_config.check(list(attributes))
    limits = {name: options.pop(name) for name in CertificationPolicy.model_fields}
    policy = None
    if any(v is not None for v in limits.values()):
        policy = validated(CertificationPolicy, "policy", **limits)
    data = dataset_config_from_options(options)
    classifier = method_config.classifier
    check_outputs([out], inputs=[glow_path, *([classifier] if classifier else [])])
    set_threads(threads)
    define_spec(
        glow_path,
        list(attributes),
        epsilon,
        data,
        out,
        max_images=max_images,
        fidelity_images=fidelity_images,
        progress=not quiet,
        policy=policy,
        vectors=vectors,
        device=device,
        given=given,
        method=method_config,
    )


@main.command("show")
@click.argument("spec", type=option.FILE)
@option.out("PNG to write (default: SPEC with .strips.png).", required=False)
@option.model(SHOW, "n_inputs", "--inputs", type=int)
@option.model(SHOW, "steps", type=int, help="Points on each strip over [-eps, eps].")
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Your copy of the spec's data (CelebA, FairFace, an image folder, a 3dshapes.h5); the "
    "spec records no path: every read is inside this folder.",
)
@click.option(
    "--csv",
    type=option.FILE,
    default=None,
    help="Folder data: the attribute CSV (default: the one the spec names in --data-root, "
    "else DATA_ROOT/attributes.csv).",
)
@allow_outside_option
@option.threads
def show_command(
    spec: Path, out: Path | None, threads: int | None, allow_outside: bool, **options: Any
) -> None:
    """Render labelled strips along representative vectors of a spec (3D Shapes: also the closest
    point of the set to each ground-truth sibling, above the siblings)."""
    from lassi.regulator.coverage import describe
    from lassi.regulator.data_config import check_data_root
    from lassi.regulator.show import show_spec
    from lassi.regulator.similarity import describe_fidelity

    out = out or spec.with_name(spec.stem + ".strips.png")
    check_outputs([out], inputs=[spec])
    set_threads(threads)
    if options["data_root"] is not None:
        check_data_root(options["data_root"])
    meta = show_spec(spec, out, allow_symlinks_outside_root=allow_outside, **options)
    click.echo(f"vectors computed from: {meta.data.describe()}")
    if meta.fidelity is not None:
        click.echo(describe_fidelity(meta.fidelity, meta.epsilon))
    if meta.coverage is not None:
        click.echo(describe(meta.coverage))
    click.echo(f"wrote {out}")


@main.command("audit")
@trusted_inputs("bundle", "base_function")
@click.option("--spec", type=option.FILE, required=True, help="The regulator's similarity spec.")
@click.option(
    "--base-function",
    type=option.FILE,
    required=True,
    help="The producer's base_function.onnx (lassi-producer export-onnx).",
)
@click.option("--bundle", type=option.FILE, required=True, help="The producer's certified bundle.")
@click.option(
    "--ids",
    default=None,
    help="Comma-separated sample ids to re-check (default: the first --count).",
)
@option.model(AUDIT, "count", type=int)
@option.model(AUDIT, "tolerance", type=float, help="Relative tolerance on r_CS.")
@click.option(
    "--data-root",
    type=option.FOLDER,
    default=None,
    help="The auditor's own copy of the data (CelebA/folder); the bundle's paths are never used, "
    "and its images must hash as the bundle records.",
)
@allow_outside_option
@option.out(
    "Also write the per-sample findings as JSON; the replay then checkpoints to OUT.ckpt "
    "and resumes from it.",
    required=False,
)
@option.json("Print the per-sample results as JSON.")
@option.html(
    ": per sample the input, its similar individuals decoded by the spec's Glow and the audit's "
    "figures, the spec's coverage at the top"
)
@click.option(
    "--glow",
    "glow_path",
    type=option.FILE,
    default=None,
    help="--html: the spec's Glow artifact, for its bits/dim on the page.",
)
@click.option(
    "--report",
    "report_path",
    type=option.FILE,
    default=None,
    help="--html: the consumer's verification report of this bundle (lassi-consumer verify), "
    "for each sample's R and class names on the page.",
)
@option.per_sample
@option.quiet
def audit_command(
    spec: Path,
    base_function: Path,
    bundle: Path,
    ids: str | None,
    count: int,
    tolerance: float,
    data_root: Path | None,
    allow_outside: bool,
    out: Path | None,
    as_json: bool,
    html: Path | None,
    glow_path: Path | None,
    report_path: Path | None,
    threads: int | None,
    device: Any,
    quiet: bool,
) -> None:
    """Replay center smoothing in onnxruntime and confirm or flag the bundle's r_CS claims.

    Rows name each sample by its 0-based id and, when the bundle names its images, the image
    file (or CSV key). Exit status 4 when a claim is not confirmed or the data does not match.
    """
    from lassi.regulator.audit import audit_bundle
    from lassi.regulator.audit_findings import audit_failure, audit_table, write_findings
    from lassi.spec import IntegrityError

    try:
        chosen = None if ids is None else [int(i) for i in ids.split(",") if i.strip()]
    except ValueError:
        raise UsageError(None, f"--ids must be comma-separated integers, got {ids!r}") from None
    if not 0 <= tolerance < 1 or count < 1:
        raise UsageError(None, "need 0 <= --tolerance < 1 and --count >= 1")
    if (glow_path is not None or report_path is not None) and html is None:
        raise UsageError(None, "--glow and --report apply to --html only")
    outputs = [html] if out is None else [out, checkpoint_of(out), html]
    check_outputs(outputs, inputs=[spec, base_function, bundle, glow_path, report_path])
    if html is not None:  # a wrong --glow is refused before the replay
        from lassi.regulator.audit_page import consumer_figures, glow_quality

        quality = glow_quality(glow_path, spec)
        consumer = consumer_figures(report_path, bundle)
    with option.running(threads) as runner:
        result = audit_bundle(
            spec, base_function, bundle, ids=chosen, count=count, tolerance=tolerance,
            data_root=data_root, allow_symlinks_outside_root=allow_outside,
            executor=runner, device=device, checkpoint=None if out is None else checkpoint_of(out),
            progress=not quiet and not as_json, threads=threads or 0,
        )  # fmt: skip
    for note in result.notes:
        click.echo(note, err=True)
    findings = write_findings(result.rows, out)
    if html is not None:
        from lassi.regulator.audit_page import write_audit_page

        write_audit_page(result, spec, bundle, html, quality, consumer)
    click.echo(findings if as_json else audit_table(result.rows))
    if any(r.verdict != "confirmed" for r in result.rows):
        raise IntegrityError(bundle, audit_failure(result.rows))
    for written in (out, html):
        if written is not None:
            click.echo(f"wrote {written}", err=True)
    click.echo(f"all {len(result.rows)} re-checked claims confirmed within {tolerance:.1%}", err=True)


if __name__ == "__main__":
    main()
