"""``lassi-regulator``: a thin click layer over the Python API of lassi.regulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lassi.regulator import TOOL
from lassi.regulator.data_config import dataset_config_from_options, dataset_options
from lassi.spec import GlowConfig, UsageError
from lassi.spec.runtime.cli import (
    executor_from_options,
    executor_options,
    role_group,
    set_threads,
    threads_option,
    trusted_inputs,
    validated,
)
from lassi.spec.runtime.device import device_option
from lassi.spec.runtime.outputs import check_outputs, checkpoint_of

allow_outside_option = click.option(
    "--allow-symlinks-outside-root",
    "allow_outside",
    is_flag=True,
    help="Read symbolic links that lead out of --data-root (a link farm).",
)
"""The opt-in to links leaving --data-root of the commands that read another party's data
(``show``, ``audit``); the data options of the others declare it with the rest."""

main = role_group(
    "lassi-regulator",
    TOOL.split(" ", 1)[1],
    "The regulator: trains the Glow flow, computes attribute vectors, fixes epsilon and writes the similarity spec.",
)


@main.command("train-glow")
@dataset_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Glow artifact to write.",
)
@click.option("--levels", "n_levels", type=int, default=3, show_default=True, help="Glow blocks L.")
@click.option(
    "--depth", "n_steps", type=int, default=8, show_default=True, help="Flow steps per block K."
)
@click.option("--hidden", type=int, default=128, show_default=True, help="Coupling network width.")
@click.option(
    "--coupling", type=click.Choice(["additive", "affine"]), default="additive", show_default=True
)
@click.option("--n-bits", type=int, default=5, show_default=True, help="Bits per colour channel.")
@click.option("--steps", type=int, default=2000, show_default=True, help="Optimisation steps.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option(
    "--warmup",
    "warmup_steps",
    type=int,
    default=200,
    show_default=True,
    help="Linear LR warm-up steps.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint-every", type=int, default=100, show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores).")
@device_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
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
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Glow artifact to write.",
)
@click.option(
    "--image-size",
    type=int,
    required=True,
    help="Image size the checkpoint was trained at (not recorded in it; sets the top prior).",
)
@click.option(
    "--n-bits", type=int, default=5, show_default=True, help="Bits per colour channel it was trained with."
)
def import_glow_command(checkpoint: Path, out: Path, image_size: int, n_bits: int) -> None:
    """Import a rosinality/glow-pytorch Glow state dict (the LASSI authors' released Glows), a
    .pt/.pth read with torch.load(weights_only=True) or a .safetensors with the same keys."""
    from lassi.regulator.glow.rosinality import import_glow

    check_outputs([out], inputs=[checkpoint])
    import_glow(checkpoint, out, image_size=image_size, n_bits=n_bits)
    click.echo(f"wrote {out}")


@main.command("define")
@click.option(
    "--glow",
    "glow_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Glow artifact (from train-glow).",
)
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    help="Sensitive attribute (repeat for several: the l2 ball ||t|| <= eps); required except "
    "with --method discover.",
)
@click.option(
    "--epsilon",
    type=float,
    default=1.0,
    show_default=True,
    help="Radius of the similarity ball in t-space.",
)
@dataset_options
@click.option(
    "--max-images",
    type=int,
    default=None,
    help="Use at most this many train images for the vectors.",
)
@click.option(
    "--vectors",
    type=click.Choice(["pairs", "halves"]),
    default="pairs",
    show_default=True,
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
    default="average",
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
@click.option(
    "--normalize/--no-normalize",
    default=True,
    show_default=True,
    help="perpendicular: unit-norm vectors (ramaswamy's are scaled, discover's unit).",
)
@click.option(
    "--boundary-epochs", type=int, default=3, show_default=True, help="Linear classifiers: epochs."
)
@click.option("--boundary-lr", type=float, default=1e-3, show_default=True)
@click.option("--boundary-batch-size", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Learned methods' seed.")
@click.option(
    "--classifier",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="discover: the biased classifier, a lassi encoder artifact (E_L and its auxiliary head, "
    "e.g. lassi-producer train --lambda-adv 0 on the task) whose input is this Glow's latent.",
)
@click.option(
    "--class-index", type=int, default=1, show_default=True, help="discover: the class whose probability moves."
)
@click.option("--directions", type=int, default=3, show_default=True, help="discover: directions.")
@click.option("--discover-iterations", type=int, default=2000, show_default=True)
@click.option("--discover-batch-size", type=int, default=4, show_default=True)
@click.option("--discover-lr", type=float, default=1e-3, show_default=True)
@click.option("--lambda-orth", type=float, default=10.0, show_default=True, help="discover: orthogonality weight.")
@click.option(
    "--discover-step",
    type=float,
    default=None,
    help="discover: walk -s, 0, +s along the normal (default eps/2: the authors walk 5 and "
    "certify at eps 10).",
)
@click.option(
    "--fidelity-images",
    type=int,
    default=32,
    show_default=True,
    help="3D Shapes: test images for the fidelity and coverage figures.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Similarity spec to write.",
)
@click.option(
    "--max-alpha",
    type=float,
    default=None,
    help="Policy: largest alpha1 + alpha2 a producer's center smoothing may use.",
)
@click.option("--sigma-enc-min", type=float, default=None, help="Policy: smallest sigma_enc.")
@click.option("--sigma-enc-max", type=float, default=None, help="Policy: largest sigma_enc.")
@click.option("--min-n", type=int, default=None, help="Policy: fewest center-smoothing samples n.")
@click.option("--threads", type=int, default=None)
@device_option
@click.option("--quiet", is_flag=True)
def define_command(
    glow_path: Path,
    attributes: tuple[str, ...],
    epsilon: float,
    out: Path,
    max_images: int | None,
    vectors: str,
    given: str | None,
    method: str,
    task: str | None,
    normalize: bool,
    boundary_epochs: int,
    boundary_lr: float,
    boundary_batch_size: int,
    seed: int,
    classifier: Path | None,
    class_index: int,
    directions: int,
    discover_iterations: int,
    discover_batch_size: int,
    discover_lr: float,
    lambda_orth: float,
    discover_step: float | None,
    fidelity_images: int,
    max_alpha: float | None,
    sigma_enc_min: float | None,
    sigma_enc_max: float | None,
    min_n: int | None,
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

    method_config = validated(
        MethodConfig,
        "method",
        method="average_diff" if method == "average" else method,
        task=task,
        normalize=normalize,
        epochs=boundary_epochs,
        lr=boundary_lr,
        batch_size=boundary_batch_size,
        seed=seed,
        classifier=classifier,
        class_index=class_index,
        directions=directions,
        iterations=discover_iterations,
        discover_batch_size=discover_batch_size,
        discover_lr=discover_lr,
        lambda_orth=lambda_orth,
        step=discover_step,
    )
    method_config.check(list(attributes))
    limits = dict(
        max_alpha=max_alpha, sigma_enc_min=sigma_enc_min, sigma_enc_max=sigma_enc_max, min_n=min_n
    )
    policy = None
    if any(v is not None for v in limits.values()):
        policy = validated(CertificationPolicy, "policy", **limits)
    data = dataset_config_from_options(options)
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
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG to write (default: SPEC with .strips.png).",
)
@click.option("--inputs", "n_inputs", type=int, default=6, show_default=True)
@click.option(
    "--steps", type=int, default=9, show_default=True, help="Points on each strip over [-eps, eps]."
)
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Your copy of the spec's data (CelebA/folder); the spec records no path, and one "
    "recorded by an older version is never followed.",
)
@click.option(
    "--csv",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Folder data: the attribute CSV (default: the one the spec names in --data-root, "
    "else DATA_ROOT/attributes.csv).",
)
@allow_outside_option
@threads_option
def show_command(
    spec: Path,
    out: Path | None,
    n_inputs: int,
    steps: int,
    data_root: Path | None,
    csv: Path | None,
    allow_outside: bool,
    threads: int | None,
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
    if data_root is not None:
        check_data_root(data_root)
    meta = show_spec(
        spec,
        out,
        n_inputs=n_inputs,
        steps=steps,
        data_root=data_root,
        csv=csv,
        allow_symlinks_outside_root=allow_outside,
    )
    if meta.fidelity is not None:
        click.echo(describe_fidelity(meta.fidelity, meta.epsilon))
    if meta.coverage is not None:
        click.echo(describe(meta.coverage))
    click.echo(f"wrote {out}")


@main.command("audit")
@trusted_inputs("bundle", "base_function")
@click.option(
    "--spec",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The regulator's similarity spec.",
)
@click.option(
    "--base-function",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The producer's base_function.onnx (lassi-producer export-onnx).",
)
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The producer's certified bundle.",
)
@click.option(
    "--ids",
    default=None,
    help="Comma-separated sample ids to re-check (default: the first --count).",
)
@click.option("--count", type=int, default=5, show_default=True)
@click.option(
    "--tolerance", type=float, default=0.01, show_default=True, help="Relative tolerance on r_CS."
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The auditor's own copy of the data (CelebA/folder); the bundle's paths are never used, "
    "and its images must hash as the bundle records.",
)
@allow_outside_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the per-sample findings as JSON; the replay then checkpoints to OUT.ckpt "
    "and resumes from it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the per-sample results as JSON.")
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a self-contained HTML page: per sample the input, its similar individuals "
    "decoded by the spec's Glow and the audit's figures, the spec's coverage at the top.",
)
@click.option(
    "--glow",
    "glow_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="--html: the spec's Glow artifact, for its bits/dim on the page.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="--html: the consumer's verification report of this bundle (lassi-consumer verify), "
    "for each sample's R and class names on the page.",
)
@click.option(
    "--threads", type=int, default=None, help="torch and onnxruntime threads (default: all cores)."
)
@executor_options
@device_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
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
    executor: str,
    workers: int,
    ray_address: str | None,
    device: Any,
    quiet: bool,
) -> None:
    """Replay center smoothing in onnxruntime and confirm or flag the bundle's r_CS claims.

    Rows name each sample by its 0-based id and, when the bundle names its images, the image
    file (or CSV key). Exit status 4 when a claim is not confirmed or the data does not match.
    """
    import json

    from lassi.regulator.audit import audit_bundle
    from lassi.spec import IntegrityError
    from lassi.spec.contract.errors import printable
    from lassi.spec.contract.io import atomic_path

    try:
        chosen = None if ids is None else [int(i) for i in ids.split(",") if i.strip()]
    except ValueError:
        raise UsageError(None, f"--ids must be comma-separated integers, got {ids!r}") from None
    if not 0 <= tolerance < 1 or count < 1:
        raise UsageError(None, "need 0 <= --tolerance < 1 and --count >= 1")
    if threads is not None and threads < 1:
        raise UsageError(None, "--threads must be at least 1")
    if (glow_path is not None or report_path is not None) and html is None:
        raise UsageError(None, "--glow and --report apply to --html only")
    outputs = [html] if out is None else [out, checkpoint_of(out), html]
    check_outputs(outputs, inputs=[spec, base_function, bundle, glow_path, report_path])
    if html is not None:  # a wrong --glow is refused before the replay
        from lassi.regulator.audit_page import consumer_figures, glow_quality

        quality = glow_quality(glow_path, spec)
        consumer = consumer_figures(report_path, bundle)
    set_threads(threads)
    with executor_from_options(executor, workers, ray_address, threads) as runner:
        result = audit_bundle(
            spec,
            base_function,
            bundle,
            ids=chosen,
            count=count,
            tolerance=tolerance,
            data_root=data_root,
            allow_symlinks_outside_root=allow_outside,
            executor=runner,
            device=device,
            checkpoint=None if out is None else checkpoint_of(out),
            progress=not quiet and not as_json,
            threads=threads or 0,
        )
    rows = result.rows
    for note in result.notes:
        click.echo(note, err=True)
    findings = json.dumps([r.as_dict() for r in rows], indent=2, allow_nan=False)
    if out is not None:
        with atomic_path(out) as tmp:
            Path(tmp).write_text(findings + "\n")
    if html is not None:
        from lassi.regulator.audit_page import write_audit_page

        write_audit_page(result, spec, bundle, html, quality, consumer)
    if as_json:
        click.echo(findings)
    else:
        named = any(r.file is not None for r in rows)
        click.echo(
            f"| id |{' file |' if named else ''} claimed r_CS | replayed r_CS | center distance | verdict |"
        )
        click.echo(f"| --- |{' --- |' if named else ''} --- | --- | --- | --- |")
        for r in rows:
            file = f" {printable(r.file)} |" if named else ""
            replayed = (
                "– | –"
                if r.replayed_r_cs is None
                else f"{r.replayed_r_cs:.5f} | {r.center_distance:.2e}"
            )
            click.echo(f"| {r.sample_id} |{file} {r.claimed_r_cs:.5f} | {replayed} | {r.verdict} |")
    flagged = [r for r in rows if r.verdict != "confirmed"]
    if flagged:
        raise IntegrityError(bundle, audit_failure(rows))
    for written in (out, html):
        if written is not None:
            click.echo(f"wrote {written}", err=True)
    click.echo(f"all {len(rows)} re-checked claims confirmed within {tolerance:.1%}", err=True)


def audit_failure(rows: list) -> str:
    """One line on the audit's flagged rows: claims not confirmed, samples not auditable (their
    data differs under --data-root, file named), and how many were confirmed."""
    wrong = [r for r in rows if r.verdict != "confirmed" and r.detail is None]
    unusable = [r for r in rows if r.detail is not None]
    parts = []
    if wrong:
        first = wrong[0]
        name = "" if first.file is None else f" ({first.file})"
        parts.append(
            f"{len(wrong)} of {len(rows)} re-checked r_CS claims not confirmed "
            f"(e.g. sample {first.sample_id}{name}: {first.verdict})"
        )
    if unusable:
        first = unusable[0]
        name = "" if first.file is None else f" ({first.file})"
        parts.append(
            f"{len(unusable)} of {len(rows)} samples not auditable, their data differs under "
            f"--data-root (e.g. sample {first.sample_id}{name}: "
            f"{first.verdict.removeprefix('data_')}, {first.detail})"
        )
    confirmed = sum(r.verdict == "confirmed" for r in rows)
    return "; ".join(parts) + f"; {confirmed} of {len(rows)} confirmed"


if __name__ == "__main__":
    main()
