"""An experiments folder: the regulator's spec, the producer's and the consumer's runs in it, and
the reuse of finished runs (every run of a folder is bound to its spec, so one folder per Glow)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lassi.consumer.classifier import train_consumer_classifier
from lassi.consumer.verification import verify
from lassi.experiments.reuse import (
    Setting,
    bundle_settings,
    classifier_settings,
    encoder_settings,
    first_difference,
    refuse_other_settings,
    report_settings,
    spec_settings,
)
from lassi.experiments.settings import Settings
from lassi.producer.encode import encode_split, select_ids
from lassi.producer.training import EncoderTrainConfig, train_encoder
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.similarity import define_spec
from lassi.spec import (
    Artifact,
    ClassifierCard,
    EncoderCard,
    GlowArtifact,
    LossWeights,
    RepresentationBundle,
    SimilaritySpec,
    UsageError,
    VerificationReport,
    read_artifact,
)
from lassi.spec.contract.binding import read_spec_header
from lassi.spec.contract.io import read_header
from lassi.spec.contract.models import CenterSmoothingParams


def regulator_data(glow_path: Path, root: Path | None = None) -> DatasetConfig:
    """The regulator's plain data set (the Glow's, without any correlated split), read from
    ``root`` when it is on disk (the recorded location is never followed)."""
    meta = read_header(glow_path, expect=GlowArtifact)[0]
    if meta.data is None:
        raise UsageError(glow_path, "is an imported Glow (import-glow): it records no data set to run on")
    return DatasetConfig.from_provenance(meta.data, glow_path, root=root).model_copy(
        update={"correlate": None}
    )


def data_config(glow_path: Path, correlate: str, root: Path | None = None) -> DatasetConfig:
    """The producer's data: the Glow's splits, the train split correlated as ``correlate`` says."""
    return regulator_data(glow_path, root).model_copy(update={"correlate": correlate})


@dataclass(frozen=True)
class Workspace:
    """The experiments folder ``out`` (runs/experiments by default), the device every step runs
    on, the settings, and the folder of the Glow's data when it is on disk (``--data-root``).

    A step whose file is already in the folder is reused when the file records what the step
    would make (:mod:`lassi.experiments.reuse`), and refused in one line (exit 2) otherwise."""

    out: Path
    device: torch.device
    settings: Settings
    data_root: Path | None = None
    _sources: dict = field(default_factory=dict, compare=False, repr=False)  # data -> its source

    # Written next to an encoder that a probe trained with a variant its card cannot show
    # (another attack radius): trained_twin never reuses it.
    VARIANT_MARK = "trained-with-variant.json"

    @property
    def cache(self) -> Path:
        """The producer's latent cache, shared by every run of the folder."""
        return self.out / ".cache"

    def split_ids(self, data: DatasetConfig, split: str, limit: int | None = None, every: int = 1) -> np.ndarray:
        """The sample ids ``encode_split`` selects (``select_ids``), each data source opened once."""
        if data not in self._sources:
            self._sources[data] = make_source(data)
        return select_ids(self._sources[data], split, limit, every)

    @staticmethod
    def reused(path: Path, expect: type, settings: Callable[[Artifact], Iterable[Setting]]) -> bool:
        """Whether ``path`` is there to be reused; one made with other ``settings`` (recorded,
        requested) is refused (exit 2) and left as it is."""
        if not path.exists():
            return False
        refuse_other_settings(path, settings(read_artifact(path, expect=expect)))
        return True

    def spec_for(
        self, glow: Path, attributes: list[str], folder: Path, vectors: str = "halves",
        given: str | None = None,
    ) -> Path:  # fmt: skip
        """The regulator's spec (ε from the settings) over its plain data; halves specs keep
        their first file name. ``given``: ``define --condition-on given``."""
        name = "+".join(attributes) + ("" if vectors == "halves" else f"-{vectors}")
        name += "" if given is None else f"-given-{given}"
        out = folder / f"spec-{name}.safetensors"
        regulator, data = self.settings.regulator, regulator_data(glow, self.data_root)
        if out.exists():  # every run in this folder is bound to this spec: it must be this Glow's
            meta = read_spec_header(out)[0]
            check_glow(out, meta, glow)
            n_train = len(self.split_ids(data, "train"))
            refuse_other_settings(out, spec_settings(
                meta, attributes, vectors, given, regulator.epsilon, data.provenance("train", n_train)
            ))  # fmt: skip
        else:
            folder.mkdir(parents=True, exist_ok=True)
            define_spec(
                glow, attributes, regulator.epsilon, data, out,
                fidelity_images=regulator.fidelity_images, vectors=vectors, device=self.device,
                given=given,
            )  # fmt: skip
        return out

    def protocol_spec(self, glow: Path, protocol: str) -> Path:
        """The orientation spec of a Table 2 protocol, in the protocol's folder."""
        p = self.settings.protocols[protocol]
        return self.spec_for(glow, ["orientation"], self.out / p.folder, p.vectors, p.given)

    def encoder_wanted(
        self, config: EncoderTrainConfig, spec: Path, attack_spec: Path | None = None
    ) -> Callable[[EncoderCard], Iterator[Setting]]:
        """What an encoder card must record to be the encoder ``config`` trains on ``spec``."""
        spec_sha = read_header(spec)[2]
        attack_sha = None if attack_spec is None else read_header(attack_spec)[2]
        n_train = len(self.split_ids(config.data, "train", config.max_train))
        return lambda card: encoder_settings(card, config, spec_sha, attack_sha, n_train)

    def trained_twin(
        self, config: EncoderTrainConfig, spec: Path, out: Path, attack_spec: Path | None = None
    ) -> bool:
        """Hard-link (or copy) to ``out`` an encoder another experiment of this folder already
        trained with exactly ``config`` on ``spec`` (e.g. the sibling probe's for a Table 2 run),
        judged by its card (:func:`encoder_settings`). Returns whether one was found."""
        wanted = self.encoder_wanted(config, spec, attack_spec)
        for other in sorted(self.out.glob("*/*/encoder.safetensors")):
            if other.resolve() == out.resolve() or (other.parent / self.VARIANT_MARK).exists():
                continue  # a probe's training variant leaves the card as is: never a twin
            if first_difference(wanted(read_artifact(other, expect=EncoderCard).meta)) is None:
                out.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(other, out)
                except OSError:
                    shutil.copyfile(other, out)
                print(f"reusing {other} (trained with the same configuration)", file=sys.stderr)
                return True
        return False

    def encoder_run(
        self, config: EncoderTrainConfig, spec: Path, out: Path, attack_spec: Path | None = None
    ) -> Path:
        """E_L trained as ``config`` says on ``spec`` at ``out``: the one there (made with
        ``config``), another experiment's twin, or trained now."""
        wanted = self.encoder_wanted(config, spec, attack_spec)
        if not self.reused(out, EncoderCard, lambda a: wanted(a.meta)) and not self.trained_twin(
            config, spec, out, attack_spec
        ):
            train_encoder(
                config, spec, out, cache_dir=self.cache, device=self.device, attack_spec=attack_spec
            )
        return out

    def bundle_run(
        self, spec: Path, encoder: Path, data: DatasetConfig, split: str, out: Path,
        limit: int | None = None, every: int = 1, cert: CenterSmoothingParams | None = None,
        seed: int = 0, labels: list[str] | None = None, endpoints: bool = False,
        progress: bool = True,
    ) -> Path:  # fmt: skip
        """The bundle ``encode_split`` writes with these arguments at ``out``: the one there
        (made with them) or encoded now."""
        ids = self.split_ids(data, split, limit, every)

        def wanted(bundle: Artifact) -> Iterator[Setting]:
            return bundle_settings(
                bundle.meta, bundle.tensors["ids"].tolist(), encoder_sha=read_header(encoder)[2],
                spec_sha=read_header(spec)[2], data=data.provenance(split, len(ids)),
                wanted_ids=ids.tolist(), labels=list(dict.fromkeys(labels or [encoder_task(encoder)])),
                cert=cert, seed=seed, endpoints=endpoints,
            )  # fmt: skip

        if not self.reused(out, RepresentationBundle, wanted):
            encode_split(
                spec, encoder, data, split, out, limit=limit, every=every, certify=cert, seed=seed,
                cache_dir=self.cache, labels=labels, device=self.device, endpoints=endpoints,
                progress=progress,
            )  # fmt: skip
        return out

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
        """Encoder + plain train bundle + certified test bundle (reused when present and made
        with these settings); the bundles carry ``labels`` (default: the encoder's task).
        ``attack_spec``: the encoder's random attack draws over this extension of ``spec``
        (``lassi-producer train --attack-spec``). The method's ``augment`` (settings) trains the
        data-augmentation baseline. ``endpoints``: the test bundle also certifies each sample's
        segment end points (``lassi-producer encode --certify --endpoints``)."""
        folder.mkdir(parents=True, exist_ok=True)
        row = self.settings.methods.get(method)  # transfer's producer is no row: its loss given
        config = self.encoder_config(
            data, loss or row.loss, seed, epochs or self.settings.encoder.epochs, keep,
            0 if row is None else row.augment,
        )  # fmt: skip
        encoder = self.encoder_run(config, spec, folder / "encoder.safetensors", attack_spec)
        train = self.bundle_run(spec, encoder, data, "train", folder / "train.safetensors", labels=labels)
        test = self.bundle_run(
            spec, encoder, data, "test", folder / "test.safetensors", limit=n_test,
            cert=cert or self.settings.cert, seed=seed, labels=labels, endpoints=endpoints,
        )  # fmt: skip
        return encoder, train, test

    def classifier_run(
        self, train: Path, task: str, sigma: float, out: Path, seed: int, epochs: int | None
    ) -> Path:
        """The consumer's C_L trained on ``train`` (``epochs`` None: to convergence) at ``out``:
        the one there (made with these settings) or trained now."""
        train_sha = read_header(train)[2]
        wanted = lambda a: classifier_settings(a.meta, train_sha, task, sigma, epochs, seed)  # noqa: E731
        if not self.reused(out, ClassifierCard, wanted):
            train_consumer_classifier(
                train, task, out, sigma, epochs=epochs, seed=seed, progress=False, device=self.device
            )
        return out

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
        """Train the consumer's classifier and verify the test bundle bound to ``spec`` (each
        reused when present and made with these settings); the report's summary with the two
        files' paths."""
        name = f"{task}-sigma{sigma}" + (f"-epochs{epochs}" if epochs != 1 else "")
        classifier = self.classifier_run(train, task, sigma, folder / f"classifier-{name}.safetensors", seed, epochs)
        report = folder / f"report-{name}.safetensors"
        params = verify_params or self.settings.verify
        shas = read_header(classifier)[2], read_header(test)[2], read_header(spec)[2]
        wanted = lambda a: report_settings(a.meta, *shas, params, seed)  # noqa: E731
        if not self.reused(report, VerificationReport, wanted):
            verify(classifier, test, report, seed=seed, progress=False, device=self.device,
                   spec_path=spec, **params)  # fmt: skip
        return read_artifact(report).meta.summary.model_dump() | {
            "classifier": str(classifier),
            "report": str(report),
        }


def encoder_task(encoder: Path) -> str:
    """The task an encoder was trained for (a bundle's default label)."""
    return read_header(encoder, expect=EncoderCard)[0].task


def check_glow(path: Path, meta: SimilaritySpec, glow: Path) -> None:
    """A spec in an experiments folder was made from ``glow`` (one folder per Glow)."""
    made_from = meta.parents.get("glow", "")
    if made_from != read_header(glow)[2]:
        raise UsageError(
            path, f"made from another Glow (SHA-256 {made_from[:12]}…), not {glow}; give each "
            "Glow its own experiments folder with --out",
        )  # fmt: skip
