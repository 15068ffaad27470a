"""An experiments folder: the regulator's spec, the producer's and the consumer's runs in it, and
the reuse of finished runs (every run of a folder is bound to its spec, so one folder per Glow)."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from lassi.consumer.classifier import train_consumer_classifier
from lassi.consumer.verification import verify
from lassi.experiments.settings import Settings
from lassi.producer.encode import encode_split
from lassi.producer.training import EncoderTrainConfig, train_encoder
from lassi.regulator.data_config import DatasetConfig
from lassi.regulator.similarity import define_spec, load_glow
from lassi.spec import DataProvenance, LossWeights, UsageError, read_artifact
from lassi.spec.contract.binding import read_spec_header
from lassi.spec.contract.models import CenterSmoothingParams


def regulator_data(glow_path: Path, root: Path | None = None) -> DatasetConfig:
    """The regulator's plain data set (the Glow's, without any correlated split), read from
    ``root`` when it is on disk (the recorded location is never followed)."""
    _, artifact = load_glow(glow_path)
    if artifact.meta.data is None:
        raise UsageError(glow_path, "is an imported Glow (import-glow): it records no data set to run on")
    return DatasetConfig.from_provenance(artifact.meta.data, glow_path, root=root).model_copy(
        update={"correlate": None}
    )


def data_config(glow_path: Path, correlate: str, root: Path | None = None) -> DatasetConfig:
    """The producer's data: the Glow's splits, the train split correlated as ``correlate`` says."""
    return regulator_data(glow_path, root).model_copy(update={"correlate": correlate})


def same_data(recorded: DataProvenance, wanted: DataProvenance) -> bool:
    """Whether an artifact's recorded data is the data a configuration names: the same source,
    split, size, seed and options (how the artifact hashed the content is not part of it)."""
    fields = ("dataset", "split", "n_samples", "seed", "options")
    return all(getattr(recorded, f) == getattr(wanted, f) for f in fields)


@dataclass(frozen=True)
class Workspace:
    """The experiments folder ``out`` (runs/experiments by default), the device every step runs
    on, the settings, and the folder of the Glow's data when it is on disk (``--data-root``)."""

    out: Path
    device: torch.device
    settings: Settings
    data_root: Path | None = None

    # Written next to an encoder that a probe trained with a variant its card cannot show
    # (another attack radius): trained_twin never reuses it.
    VARIANT_MARK = "trained-with-variant.json"

    @property
    def cache(self) -> Path:
        """The producer's latent cache, shared by every run of the folder."""
        return self.out / ".cache"

    def spec_for(
        self, glow: Path, attributes: list[str], folder: Path, vectors: str = "halves",
        given: str | None = None,
    ) -> Path:  # fmt: skip
        """The regulator's spec (ε from the settings) over its plain data; halves specs keep
        their first file name. ``given``: ``define --condition-on given``."""
        name = "+".join(attributes) + ("" if vectors == "halves" else f"-{vectors}")
        name += "" if given is None else f"-given-{given}"
        out = folder / f"spec-{name}.safetensors"
        if out.exists():  # every run in this folder is bound to this spec: it must be this Glow's
            made_from = read_spec_header(out)[0].parents.get("glow", "")
            if made_from != read_artifact(glow).sha256:
                raise UsageError(
                    out,
                    f"made from another Glow (SHA-256 {made_from[:12]}…), not {glow}; "
                    "give each Glow its own experiments folder with --out",
                )
        else:
            folder.mkdir(parents=True, exist_ok=True)
            regulator = self.settings.regulator
            define_spec(
                glow, attributes, regulator.epsilon, regulator_data(glow, self.data_root), out,
                fidelity_images=regulator.fidelity_images, vectors=vectors, device=self.device,
                given=given,
            )  # fmt: skip
        return out

    def protocol_spec(self, glow: Path, protocol: str) -> Path:
        """The orientation spec of a Table 2 protocol, in the protocol's folder."""
        p = self.settings.protocols[protocol]
        return self.spec_for(glow, ["orientation"], self.out / p.folder, p.vectors, p.given)

    def trained_twin(
        self, config: EncoderTrainConfig, spec: Path, out: Path, attack_spec: Path | None = None
    ) -> bool:
        """Hard-link (or copy) to ``out`` an encoder another experiment of this folder already
        trained with exactly ``config`` on ``spec`` (e.g. the sibling probe's for a Table 2 run),
        judged by its card: the same spec and attack set, architecture, sizes, task, losses,
        training schedule, seed and data. Returns whether one was found."""
        spec_sha = read_artifact(spec).sha256
        attack_sha = None if attack_spec is None else read_artifact(attack_spec).sha256
        for other in sorted(self.out.glob("*/*/encoder.safetensors")):
            if other.resolve() == out.resolve() or (other.parent / self.VARIANT_MARK).exists():
                continue  # a probe's training variant leaves the card as is: never a twin
            card = read_artifact(other).meta
            t = card.training
            same = (
                card.parents.get("similarity_spec") == spec_sha
                and (t.attack_set.spec if t.attack_set is not None else None) == attack_sha
                and (card.architecture, card.hidden, card.width, card.k, card.task, card.loss)
                == (config.architecture, list(config.hidden), config.width, config.k, config.task, config.loss)
                and (t.epochs, t.batch_size, t.lr, t.seed, t.keep, t.augment)
                == (config.epochs, config.batch_size, config.lr, config.seed, config.keep, config.augment)
                and config.max_train is None
                and same_data(card.data, config.data.provenance("train", card.data.n_samples))
            )
            if same:
                out.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(other, out)
                except OSError:
                    shutil.copyfile(other, out)
                print(f"reusing {other} (trained with the same configuration)", file=sys.stderr)
                return True
        return False

    def encoder_config(
        self, data: DatasetConfig, loss: LossWeights, seed: int, epochs: int, keep: str = "best",
        augment: int = 0,
    ) -> EncoderTrainConfig:  # fmt: skip
        """The experiments' encoder (settings' [encoder]) with these losses, seed and schedule;
        ``augment``: the data-augmentation baseline's points per sample (0: none)."""
        e = self.settings.encoder
        return EncoderTrainConfig(
            hidden=list(e.hidden), k=e.k, task=e.task, loss=loss, epochs=epochs,
            batch_size=e.batch_size, seed=seed, data=data, keep=keep, augment=augment,
        )  # fmt: skip

    def producer_run(
        self,
        spec: Path,
        data: DatasetConfig,
        method: str,
        seed: int,
        folder: Path,
        n_test: int,
        loss: LossWeights | None = None,
        epochs: int | None = None,
        cert: CenterSmoothingParams | None = None,
        labels: list[str] | None = None,
        keep: str = "best",
        attack_spec: Path | None = None,
        endpoints: bool = False,
    ) -> tuple[Path, Path, Path]:
        """Encoder + plain train bundle + certified test bundle (reused when present); the
        bundles carry ``labels`` (default: the encoder's task). ``attack_spec``: the encoder's
        random attack draws over this extension of ``spec`` (``lassi-producer train
        --attack-spec``). The method's ``augment`` (settings) trains the data-augmentation
        baseline. ``endpoints``: the test bundle also certifies each sample's segment end points
        (``lassi-producer encode --certify --endpoints``); a test bundle already there without
        them is refused rather than reused."""
        folder.mkdir(parents=True, exist_ok=True)
        encoder, train, test = (
            folder / "encoder.safetensors",
            folder / "train.safetensors",
            folder / "test.safetensors",
        )
        if not encoder.exists():
            config = self.encoder_config(
                data, loss or self.settings.methods[method].loss, seed,
                epochs or self.settings.encoder.epochs, keep, self.settings.methods[method].augment,
            )  # fmt: skip
            if not self.trained_twin(config, spec, encoder, attack_spec):
                train_encoder(
                    config, spec, encoder, cache_dir=self.cache, device=self.device,
                    attack_spec=attack_spec,
                )  # fmt: skip
        if not train.exists():
            encode_split(
                spec, encoder, data, "train", train, cache_dir=self.cache, labels=labels,
                device=self.device,
            )  # fmt: skip
        if not test.exists():
            encode_split(
                spec, encoder, data, "test", test, limit=n_test,
                certify=cert or self.settings.cert, seed=seed, cache_dir=self.cache,
                labels=labels, device=self.device, endpoints=endpoints,
            )  # fmt: skip
        elif endpoints and not read_artifact(test).meta.endpoints:
            raise UsageError(test, "was certified without its end points; remove its run folder or run without --endpoints")
        return encoder, train, test

    def consumer_run(
        self,
        spec: Path,
        train: Path,
        test: Path,
        task: str,
        sigma: float,
        folder: Path,
        seed: int,
        epochs: int = 1,
        verify_params: dict | None = None,
    ) -> dict:
        """Train the consumer's classifier and verify the test bundle bound to ``spec``
        (cached); the report's summary with the two files' paths."""
        name = f"{task}-sigma{sigma}" + (f"-epochs{epochs}" if epochs != 1 else "")
        classifier = folder / f"classifier-{name}.safetensors"
        report = folder / f"report-{name}.safetensors"
        if not classifier.exists():
            train_consumer_classifier(
                train, task, classifier, sigma, epochs=epochs, seed=seed, progress=False,
                device=self.device,
            )  # fmt: skip
        if not report.exists():
            verify(classifier, test, report, seed=seed, progress=False, device=self.device,
                   spec_path=spec, **(verify_params or self.settings.verify))  # fmt: skip
        return read_artifact(report).meta.summary.model_dump() | {
            "classifier": str(classifier),
            "report": str(report),
        }
