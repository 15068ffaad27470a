"""``lassi-producer``: a thin click layer over the Python API of lassi.producer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lassi.regulator.data_config import DatasetConfig, dataset_config_from_options, dataset_options
from lassi.spec import LossWeights, UsageError
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

if TYPE_CHECKING:
    import torch

    from lassi.regulator.similarity import SimilaritySet

from lassi.producer import TOOL

main = role_group(
    "lassi-producer",
    TOOL.split(" ", 1)[1],
    "The producer: trains the fair encoder and exports center-smoothed representations with certified radii.",
)

PATH = click.Path(dir_okay=False, path_type=Path)


def _load_spec(spec: Path, options: dict[str, Any]) -> tuple[SimilaritySet, DatasetConfig]:
    """The spec (read once per command) and the data options; unless given, the image size
    follows the spec's Glow."""
    from lassi.regulator.similarity import SimilaritySet

    sim = SimilaritySet.load(spec)
    return sim, dataset_config_from_options(
        options, image_size=sim.meta.flow.image_size, recorded=sim.meta.data, where=spec
    )


@main.command("train")
@trusted_inputs(regulator=("spec", "attack_spec"))
@click.option("--spec", type=PATH, required=True, help="Similarity spec from the regulator.")
@click.option(
    "--attack-spec",
    type=PATH,
    default=None,
    help="Train the random attack over this larger set: a second spec of the regulator's that "
    "extends --spec (same Glow and eps, the spec's vectors first, e.g. define --condition-on). "
    "The encoder and its certificates stay --spec's.",
)
@dataset_options
@click.option("--task", required=True, help="Attribute to predict (e.g. object_hue).")
@click.option("--out", type=PATH, required=True, help="Encoder artifact to write.")
@click.option(
    "--architecture",
    type=click.Choice(["latent_mlp", "image_resnet18"]),
    default="latent_mlp",
    show_default=True,
)
@click.option(
    "--hidden", default="2048,1024", show_default=True, help="Hidden widths of the latent MLP."
)
@click.option(
    "--width", type=int, default=64, show_default=True, help="Base width of the ResNet-18."
)
@click.option("--k", type=int, default=512, show_default=True, help="Representation size.")
@click.option(
    "--lambda-adv",
    "adv",
    type=float,
    default=0.1,
    show_default=True,
    help="Weight of the adversarial term (0: baseline).",
)
@click.option(
    "--lambda-contr",
    "contr",
    type=float,
    default=0.0,
    show_default=True,
    help="Weight of the contrastive term.",
)
@click.option(
    "--lambda-rec",
    "rec",
    type=float,
    default=0.0,
    show_default=True,
    help="Weight of latent reconstruction (transfer).",
)
@click.option(
    "--delta",
    "delta_contr",
    type=float,
    default=10.0,
    show_default=True,
    help="Contrastive margin delta.",
)
@click.option(
    "--attack-points",
    type=int,
    default=100,
    show_default=True,
    help="Random-attack points per sample.",
)
@click.option(
    "--attack-region",
    type=click.Choice(["ball", "cube"]),
    default="ball",
    show_default=True,
    help="Where the random attack draws t: the certified eps-ball, or the cube [-eps, eps]^m "
    "that contains it (the authors' sampler for one attribute with several vectors).",
)
@click.option(
    "--augment",
    type=int,
    default=0,
    show_default=True,
    help="Data-augmentation baseline: N random points of the set (--attack-region) per sample "
    "as extra training samples with the task loss only (needs --lambda-adv 0; the authors use "
    "10 on CelebA).",
)
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option(
    "--keep",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Which epoch's weights to write: the best validation accuracy, or the last epoch "
    "(the authors' choice).",
)
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-train", type=int, default=None, help="Use at most this many train images.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Glow latent cache (default: OUT's folder/.cache).",
)
@click.option("--threads", type=int, default=None)
@device_option
@click.option("--quiet", is_flag=True)
def train_command(
    spec: Path,
    out: Path,
    hidden: str,
    adv: float,
    contr: float,
    rec: float,
    delta_contr: float,
    attack_points: int,
    attack_region: str,
    attack_spec: Path | None,
    cache_dir: Path | None,
    threads: int | None,
    device: torch.device,
    quiet: bool,
    **options: Any,
) -> None:
    """Train the fair encoder E_L on the spec's Glow latents (resumes an interrupted run)."""
    from lassi.producer.training import EncoderTrainConfig, train_encoder

    check_outputs([out, checkpoint_of(out)], inputs=[spec, attack_spec])
    sim, data = _load_spec(spec, options)
    try:
        widths = [int(w) for w in hidden.split(",") if w.strip()]
    except ValueError:
        raise UsageError(
            None, f"--hidden must be comma-separated integers, got {hidden!r}"
        ) from None
    loss = validated(
        LossWeights,
        "loss",
        adv=adv,
        contr=contr,
        rec=rec,
        delta_contr=delta_contr,
        attack_points=attack_points,
        attack_region=attack_region,
    )
    config = validated(
        EncoderTrainConfig, "training", hidden=widths, loss=loss, data=data, **options
    )
    set_threads(threads)
    train_encoder(
        config, sim, out, cache_dir=cache_dir, progress=not quiet, device=device,
        attack_spec=attack_spec,
    )  # fmt: skip
    if quiet:  # the result line is printed with or without --quiet (progress is not)
        from lassi.spec import EncoderCard, read_artifact

        card = read_artifact(out, expect=EncoderCard).meta
        click.echo(
            f"wrote {out} ({card.training.keep} val acc {card.training.val_accuracy:.3f} "
            f"at epoch {card.training.best_epoch + 1})"
        )


@main.command("encode")
@trusted_inputs(regulator=("spec",))
@click.option("--spec", type=PATH, required=True, help="Similarity spec from the regulator.")
@click.option(
    "--encoder", "encoder_path", type=PATH, required=True, help="Encoder artifact (from train)."
)
@dataset_options
@click.option(
    "--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True
)
@click.option("--limit", type=int, default=None, help="At most this many samples.")
@click.option(
    "--every", type=int, default=1, show_default=True, help="Take every K-th sample of the split."
)
@click.option("--out", type=PATH, required=True, help="Representation bundle to write.")
@click.option(
    "--labels",
    "labels",
    default=None,
    help="Comma-separated labels to export (default: the encoder's task).",
)
@click.option(
    "--include-sensitive-labels",
    is_flag=True,
    help="Allow the labels of the spec's sensitive attributes (recorded in the bundle; a "
    "consumer refuses to train on them): with --labels, those of them it names; without, the "
    "task's and every sensitive attribute's.",
)
@click.option("--certify", is_flag=True, help="Center-smooth every sample (z_CS, r_CS).")
@click.option(
    "--endpoints",
    is_flag=True,
    help="With --certify: also center-smooth each segment end z_G +- eps*a_i (2m per sample, the "
    "authors' endpoints analysis); lassi-consumer verify then reports certified samples that "
    "are empirically unfair.",
)
@click.option(
    "--sigma", type=float, default=0.65, show_default=True, help="Std of the t-noise sigma_enc."
)
@click.option("--n0", type=int, default=10_000, show_default=True)
@click.option("--n", type=int, default=10_000, show_default=True)
@click.option("--alpha1", type=float, default=0.005, show_default=True)
@click.option("--alpha2", type=float, default=0.005, show_default=True)
@click.option(
    "--delta", type=float, default=0.05, show_default=True, help="Abstain threshold Delta."
)
@click.option(
    "--bounds",
    type=click.Choice(["exact", "hoeffding"]),
    default="exact",
    show_default=True,
    help="Confidence bounds of center smoothing: exact binomial or Hoeffding.",
)
@click.option(
    "--abstain-test",
    type=click.Choice(["fixed", "sequential"]),
    default="fixed",
    show_default=True,
    help="Step 2 of center smoothing: n0 draws, or the anytime-valid test that stops early "
    "(at most n0 draws, same alpha1).",
)
@click.option(
    "--batch-size", type=int, default=2_000, show_default=True, help="Draws per network call."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--threads", type=int, default=None)
@executor_options
@device_option
@click.option("--quiet", is_flag=True)
def encode_command(
    spec: Path,
    encoder_path: Path,
    split: str,
    limit: int | None,
    every: int,
    out: Path,
    labels: str | None,
    include_sensitive_labels: bool,
    certify: bool,
    endpoints: bool,
    sigma: float,
    n0: int,
    n: int,
    alpha1: float,
    alpha2: float,
    delta: float,
    bounds: str,
    abstain_test: str,
    batch_size: int,
    seed: int,
    cache_dir: Path | None,
    threads: int | None,
    executor: str,
    workers: int,
    ray_address: str | None,
    device: torch.device,
    quiet: bool,
    **options: Any,
) -> None:
    """Encode a data split into a representation bundle (certified with --certify)."""
    from lassi.producer.encode import encode_split
    from lassi.spec.contract.models.certificate import CenterSmoothingParams, never_certifies

    if endpoints and not certify:
        raise UsageError(None, "--endpoints needs --certify (end points are center-smoothed)")
    check_outputs([out, checkpoint_of(out)], inputs=[spec, encoder_path])
    sim, data = _load_spec(spec, options)
    params = None
    if certify:
        params = validated(
            CenterSmoothingParams,
            "certificate",
            sigma=sigma,
            epsilon=sim.epsilon,  # ε only from the spec
            n0=n0,
            n=n,
            alpha1=alpha1,
            alpha2=alpha2,
            delta=delta,
            bounds=bounds,
            abstain_test=abstain_test,
        )
        reason = never_certifies(params)
        if reason is not None:  # refused before any data is loaded
            raise UsageError(None, f"certificate: {reason}")
    set_threads(threads)
    with executor_from_options(executor, workers, ray_address, threads) as runner:
        encode_split(
            sim,
            encoder_path,
            data,
            split,
            out,
            limit=limit,
            every=every,
            certify=params,
            seed=seed,
            cache_dir=cache_dir,
            progress=not quiet,
            executor=runner,
            labels=[name.strip() for name in labels.split(",") if name.strip()] if labels else None,
            include_sensitive=include_sensitive_labels,
            device=device,
            endpoints=endpoints,
            batch_size=batch_size,
        )
    from lassi.spec import RepresentationBundle, read_artifact

    meta = read_artifact(out, expect=RepresentationBundle).meta
    click.echo(
        f"wrote {out} ({meta.n_samples} samples{', certified' if certify else ''}; "
        f"labels: {', '.join(meta.label_names)})"
    )


@main.command("export-onnx")
@trusted_inputs(regulator=("spec",))
@click.option("--spec", type=PATH, required=True)
@click.option("--encoder", "encoder_path", type=PATH, required=True)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for pipeline.onnx and base_function.onnx.",
)
@device_option
@threads_option
def export_onnx_command(
    spec: Path, encoder_path: Path, out_dir: Path, device: torch.device, threads: int | None
) -> None:
    """Export x -> E_L(E_G(x)) and the smoothing base function (z_G, t) -> representation as ONNX.

    The graphs are always traced and checked on the CPU (--device is accepted, and validated, so
    one set of options serves every command; it does not change the exported files)."""
    from lassi.producer.onnx_export import export_producer_onnx

    names = ("pipeline.onnx", "base_function.onnx")
    check_outputs([out_dir / name for name in names], inputs=[spec, encoder_path])
    set_threads(threads)
    for path, error in export_producer_onnx(spec, encoder_path, out_dir):
        click.echo(f"wrote {path} (max |onnxruntime - torch| = {error:.2e})")


if __name__ == "__main__":
    main()
