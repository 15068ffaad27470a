"""``lassi-producer``: a thin click layer over the Python API of lassi.producer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lassi.regulator.data_config import DatasetConfig, dataset_config_from_options, dataset_options
from lassi.spec import CenterSmoothingParams, EncoderArchitecture, LossWeights, UsageError
from lassi.spec.runtime import cli_options as option
from lassi.spec.runtime.cli import role_group, set_threads, trusted_inputs, validated
from lassi.spec.runtime.distributed import is_main
from lassi.spec.runtime.outputs import check_outputs, checkpoint_of

if TYPE_CHECKING:
    import torch

    from lassi.regulator.similarity import SimilaritySet

from lassi.producer import TOOL

main = role_group(
    TOOL,
    "The producer: trains the fair encoder and exports center-smoothed representations with certified radii.",
)

TRAINING = "lassi.producer.training:EncoderTrainConfig"
ENCODE = "lassi.producer.encode:encode_split"

spec_option = click.option(
    "--spec", type=option.FILE, required=True, help="Similarity spec from the regulator."
)
encoder_option = click.option(
    "--encoder",
    "encoder_path",
    type=option.FILE,
    required=True,
    help="Encoder artifact (from train).",
)


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
@spec_option
@click.option(
    "--attack-spec",
    type=option.FILE,
    default=None,
    help="Train the random attack over this larger set: a second spec of the regulator's that "
    "extends --spec (same Glow and eps, the spec's vectors first, e.g. define --condition-on). "
    "The encoder and its certificates stay --spec's.",
)
@dataset_options
@click.option("--task", required=True, help="Attribute to predict (e.g. object_hue).")
@option.out("Encoder artifact to write.")
@option.model(EncoderArchitecture, "architecture")
@option.model(
    EncoderArchitecture,
    "hidden",
    type=str,
    shown=lambda widths: ",".join(map(str, widths)),
    help="Hidden widths of the latent MLP.",
)
@option.model(EncoderArchitecture, "width", help="Base width of the ResNet-18.")
@option.model(EncoderArchitecture, "k", help="Representation size.")
@click.option(
    "--lambda-adv",
    "adv",
    type=float,
    default=0.1,  # the command's choice; LossWeights() is the baseline, all weights zero
    show_default=True,
    help="Weight of the adversarial term (0: baseline).",
)
@option.model(LossWeights, "contr", "--lambda-contr", help="Weight of the contrastive term.")
@option.model(
    LossWeights, "rec", "--lambda-rec", help="Weight of latent reconstruction (transfer)."
)
@option.model(LossWeights, "delta_contr", "--delta", help="Contrastive margin delta.")
@option.model(LossWeights, "attack_points", help="Random-attack points per sample.")
@option.model(
    LossWeights,
    "attack_region",
    help="Where the random attack draws t: the certified eps-ball, or the cube [-eps, eps]^m "
    "that contains it (the authors' sampler for one attribute with several vectors).",
)
@option.model(
    TRAINING,
    "augment",
    type=int,
    help="Data-augmentation baseline: N random points of the set (--attack-region) per sample "
    "as extra training samples with the task loss only (needs --lambda-adv 0; the authors use "
    "10 on CelebA).",
)
@option.model(TRAINING, "epochs", type=int)
@option.model(
    TRAINING,
    "keep",
    type=click.Choice(["best", "last"]),
    help="Which epoch's weights to write: the best validation accuracy, or the last epoch "
    "(the authors' choice).",
)
@option.model(TRAINING, "batch_size", type=int)
@option.model(TRAINING, "lr", type=float)
@option.model(TRAINING, "seed", type=int)
@click.option("--max-train", type=int, default=None, help="Use at most this many train images.")
@click.option(
    "--cache-dir",
    type=option.FOLDER,
    default=None,
    help="Glow latent cache (default: OUT's folder/.cache).",
)
@option.compute
@option.quiet
def train_command(
    spec: Path,
    out: Path,
    hidden: str,
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
    weights = ("adv", "contr", "rec", "delta_contr", "attack_points", "attack_region")
    loss = validated(LossWeights, "loss", **{name: options.pop(name) for name in weights})
    config = validated(
        EncoderTrainConfig, "training", hidden=widths, loss=loss, data=data, **options
    )
    set_threads(threads)
    train_encoder(
        config, sim, out, cache_dir=cache_dir, progress=not quiet, device=device,
        attack_spec=attack_spec,
    )  # fmt: skip
    # the result line is printed with or without --quiet (progress is not), by rank 0 alone
    # under torchrun (the one that writes the encoder)
    if quiet and is_main():
        from lassi.spec import EncoderCard, read_artifact

        card = read_artifact(out, expect=EncoderCard).meta
        click.echo(
            f"wrote {out} ({card.training.keep} val acc {card.training.val_accuracy:.3f} "
            f"at epoch {card.training.best_epoch + 1})"
        )


@main.command("encode")
@trusted_inputs(regulator=("spec",))
@spec_option
@encoder_option
@dataset_options
@click.option(
    "--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True
)
@click.option("--limit", type=int, default=None, help="At most this many samples.")
@option.model(ENCODE, "every", type=int, help="Take every K-th sample of the split.")
@option.out("Representation bundle to write.")
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
@option.model(CenterSmoothingParams, "sigma", help="Std of the t-noise sigma_enc.")
@option.model(CenterSmoothingParams, "n0")
@option.model(CenterSmoothingParams, "n")
@option.model(CenterSmoothingParams, "alpha1")
@option.model(CenterSmoothingParams, "alpha2")
@option.model(CenterSmoothingParams, "delta", help="Abstain threshold Delta.")
@option.model(
    CenterSmoothingParams,
    "bounds",
    help="Confidence bounds of center smoothing: exact binomial or Hoeffding.",
)
@option.model(
    CenterSmoothingParams,
    "abstain_test",
    help="Step 2 of center smoothing: n0 draws, or the anytime-valid test that stops early "
    "(at most n0 draws, same alpha1).",
)
@option.model(ENCODE, "batch_size", type=int, help="Draws per network call.")
@option.model(ENCODE, "seed", type=int)
@click.option("--cache-dir", type=option.FOLDER, default=None)
@option.per_sample
@option.quiet
def encode_command(
    spec: Path,
    encoder_path: Path,
    out: Path,
    labels: str | None,
    certify: bool,
    endpoints: bool,
    threads: int | None,
    quiet: bool,
    **options: Any,
) -> None:
    """Encode a data split into a representation bundle (certified with --certify)."""
    from lassi.producer.encode import encode_split
    from lassi.spec.contract.models.certificate import never_certifies

    if endpoints and not certify:
        raise UsageError(None, "--endpoints needs --certify (end points are center-smoothed)")
    check_outputs([out, checkpoint_of(out)], inputs=[spec, encoder_path])
    fields = ("sigma", "n0", "n", "alpha1", "alpha2", "delta", "bounds", "abstain_test")
    settings = {name: options.pop(name) for name in fields}
    include_sensitive = options.pop("include_sensitive_labels")
    sim, data = _load_spec(spec, options)
    params = None
    if certify:  # ε only from the spec
        params = validated(CenterSmoothingParams, "certificate", epsilon=sim.epsilon, **settings)
        reason = never_certifies(params)
        if reason is not None:  # refused before any data is loaded
            raise UsageError(None, f"certificate: {reason}")
    with option.running(threads) as runner:
        encode_split(
            sim, encoder_path, data, out=out, certify=params, progress=not quiet, executor=runner,
            labels=[name.strip() for name in labels.split(",") if name.strip()] if labels else None,
            endpoints=endpoints, include_sensitive=include_sensitive, **options,
        )  # fmt: skip
    from lassi.spec import RepresentationBundle, read_artifact

    meta = read_artifact(out, expect=RepresentationBundle).meta
    click.echo(
        f"wrote {out} ({meta.n_samples} samples{', certified' if certify else ''}; "
        f"labels: {', '.join(meta.label_names)})"
    )


@main.command("export-onnx")
@trusted_inputs(regulator=("spec",))
@spec_option
@encoder_option
@click.option(
    "--out-dir",
    type=option.FOLDER,
    required=True,
    help="Folder for pipeline.onnx and base_function.onnx.",
)
@option.compute
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
