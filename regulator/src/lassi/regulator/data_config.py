"""Which images a command works on: a pydantic config validated at the CLI edge.

The same options serve the regulator (Glow training, attribute vectors) and the producer
(encoder training and encoding), so both parties can describe their data identically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lassi.spec import DataProvenance, InvalidArtifactError, UsageError
from lassi.spec.errors import validation_message


class DatasetConfig(BaseModel):
    """A data source and its splits (3D Shapes is rendered; CelebA/folder read from disk)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Literal["shapes3d", "celeba", "folder"] = "shapes3d"
    root: Path | None = None
    csv: Path | None = None
    image_size: int = Field(64, ge=4, le=1024)
    seed: int = Field(0, ge=0)
    n_train: int = Field(20_000, ge=1)
    n_val: int = Field(1_000, ge=1)
    n_test: int = Field(1_000, ge=1)
    correlate: str | None = Field(
        None,
        description="shapes3d only: 'SENSITIVE:TARGET:STRENGTH', e.g. orientation:object_hue:0.9; "
        "STRENGTH 'full' (= 1) is the authors' fully correlated split",
    )

    @model_validator(mode="after")
    def _needs_root(self) -> DatasetConfig:
        if self.dataset != "shapes3d" and self.root is None:
            raise ValueError(f"--data-root is required for --dataset {self.dataset}")
        if self.correlate is not None and self.dataset != "shapes3d":
            raise ValueError(f"--correlate applies to shapes3d only, not to {self.dataset}")
        if self.correlate is not None:
            parts = self.correlate.split(":")
            if len(parts) != 3:
                raise ValueError("--correlate must look like SENSITIVE:TARGET:STRENGTH")
            try:
                strength = 1.0 if parts[2] == "full" else float(parts[2])
            except ValueError:
                raise ValueError("--correlate STRENGTH must be a number in [0, 1]") from None
            if not 0.0 <= strength <= 1.0:
                raise ValueError("--correlate STRENGTH must be a number in [0, 1]")
        return self

    def correlation(self) -> tuple[str, str, float] | None:
        if self.correlate is None:
            return None
        sensitive, target, strength = self.correlate.split(":")
        return sensitive, target, 1.0 if strength == "full" else float(strength)

    def provenance(self, split: str, n_samples: int) -> DataProvenance:
        options: dict[str, Any] = {"image_size": self.image_size}
        if self.dataset == "shapes3d":
            options.update(n_train=self.n_train, n_val=self.n_val, n_test=self.n_test)
            options["correlate"] = self.correlate
        if self.csv is not None:
            options["csv"] = str(self.csv)
        return DataProvenance(
            dataset=self.dataset,
            root=None if self.root is None else str(self.root),
            split=split,
            n_samples=n_samples,
            seed=self.seed,
            options=options,
        )

    @classmethod
    def from_provenance(cls, data: DataProvenance, where: str | Path | None = None) -> DatasetConfig:
        """Rebuild the config an artifact was made from (e.g. the spec's data for the producer).

        Options another party recorded that are not valid are an invalid artifact (exit 3,
        naming ``where``), not a usage error of whoever reads the file.
        """
        from pydantic import ValidationError

        options = dict(data.options)
        kwargs: dict[str, Any] = {"dataset": data.dataset, "seed": data.seed}
        if data.root is not None:
            kwargs["root"] = Path(data.root)
        for key in ("image_size", "n_train", "n_val", "n_test", "correlate", "csv"):
            if options.get(key) is not None:
                kwargs[key] = options[key]
        try:
            return cls(**kwargs)
        except ValidationError as error:
            message = validation_message(error, "data option")
            raise InvalidArtifactError(where, f"records data options that are not valid: {message}") from None


def make_source(config: DatasetConfig) -> Any:
    """Open the configured data source (an ``ImageSource`` of ``lassi.regulator.datasets``)."""
    from lassi.regulator.datasets import CelebASource, FolderSource, Shapes3DSource

    if config.dataset == "shapes3d":
        return Shapes3DSource(
            image_size=config.image_size,
            seed=config.seed,
            n_train=config.n_train,
            n_val=config.n_val,
            n_test=config.n_test,
            correlate=config.correlation(),
        )
    if config.dataset == "celeba":
        return CelebASource(config.root, image_size=config.image_size)
    return FolderSource(config.root, csv=config.csv, image_size=config.image_size)


def dataset_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """click options that build a ``DatasetConfig`` (passed on as ``data_config``)."""
    options = [
        click.option(
            "--dataset",
            type=click.Choice(["shapes3d", "celeba", "folder"]),
            default=None,
            help="Data source [default: shapes3d; with --data-root inferred from the folder].",
        ),
        click.option(
            "--data-root",
            type=click.Path(path_type=Path),
            default=None,
            help="Folder of CelebA (official or CSV layout) or of images with attributes.csv.",
        ),
        click.option(
            "--csv",
            type=click.Path(path_type=Path),
            default=None,
            help="Folder source: attribute CSV (default ROOT/attributes.csv).",
        ),
        click.option(
            "--image-size", type=int, default=None, help="Image size (default: 64, or the spec's)."
        ),
        click.option(
            "--data-seed",
            type=int,
            default=None,
            help="Seed of the 3D Shapes splits [default: 0].",
        ),
        click.option(
            "--n-train",
            type=int,
            default=None,
            help="3D Shapes: train split size [default: 20 000].",
        ),
        click.option(
            "--n-val",
            type=int,
            default=None,
            help="3D Shapes: validation split size [default: 1 000].",
        ),
        click.option(
            "--n-test",
            type=int,
            default=None,
            help="3D Shapes: test split size [default: 1 000].",
        ),
        click.option(
            "--correlate",
            default=None,
            help="3D Shapes: correlated train split SENSITIVE:TARGET:STRENGTH; STRENGTH 'full' "
            "keeps only the tied halves and drops the middle value (the authors' split).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def dataset_config_from_options(
    options: dict[str, Any], image_size: int | None = None
) -> DatasetConfig:
    """Pop the ``dataset_options`` from a click kwargs dict and validate them."""
    from pydantic import ValidationError

    size = options.pop("image_size") or image_size or 64
    root, csv = options.pop("data_root"), options.pop("csv")
    dataset = options.pop("dataset") or infer_dataset(root, csv)
    shapes_only = {
        "--data-seed": options.pop("data_seed"),
        "--n-train": options.pop("n_train"),
        "--n-val": options.pop("n_val"),
        "--n-test": options.pop("n_test"),
        "--correlate": options.pop("correlate"),
    }
    given = [flag for flag, value in shapes_only.items() if value is not None]
    if dataset != "shapes3d" and given:
        raise UsageError(
            None,
            f"{', '.join(given)} applies to the generated 3D Shapes splits only; {dataset} uses "
            "the splits of its files (cap the training images with --max-train)",
        )
    if dataset == "shapes3d" and root is not None:
        raise UsageError(root, "--data-root does not apply to --dataset shapes3d (it is generated)")
    if dataset != "folder" and csv is not None:
        raise UsageError(csv, f"--csv applies to --dataset folder only, not to {dataset}")
    values = {key.lstrip("-").replace("-", "_"): v for key, v in shapes_only.items() if v is not None}
    if "data_seed" in values:
        values["seed"] = values.pop("data_seed")
    try:
        return DatasetConfig(dataset=dataset, root=root, csv=csv, image_size=size, **values)
    except ValidationError as error:
        raise UsageError(None, f"data options: {validation_message(error, 'option')}") from None


def infer_dataset(root: Path | None, csv: Path | None) -> str:
    """The data set of a ``--data-root`` given without ``--dataset``: CelebA when one of its
    attribute files is there, a folder source when ``--csv`` or ``attributes.csv`` is; refuse
    otherwise (3D Shapes has no folder)."""
    if root is None:
        return "folder" if csv is not None else "shapes3d"
    root = Path(root)
    if any((root / name).is_file() for name in ("list_attr_celeba.txt", "list_attr_celeba.csv")):
        return "celeba"
    if csv is not None or (root / "attributes.csv").is_file():
        return "folder"
    raise UsageError(
        root,
        "cannot tell the data set from the folder (no list_attr_celeba.txt/.csv, no "
        "attributes.csv); pass --dataset celeba or --dataset folder",
    )
