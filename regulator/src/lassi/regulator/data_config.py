"""Which images a command works on: a pydantic config validated at the CLI edge.

The same options serve the regulator (Glow training, attribute vectors) and the producer
(encoder training and encoding), so both parties can describe their data identically.

An artifact records its data relocatably (:meth:`DatasetConfig.provenance`): the data source
kind, its options, for a folder source's CSV its name relative to the data root (or, for a
CSV kept elsewhere, its SHA-256), never a local path, and for rendered 3D Shapes the renderer's
identity (``renderer_sha256``: a hash of probe images rendered at run time). Data recorded with
another renderer identity than this machine's is refused (exit 4); an artifact of rendered data
without it is refused on read (exit 3). Whoever reads the data again passes their
own ``--data-root`` (:meth:`DatasetConfig.from_provenance`); a recorded CSV that is not a plain
relative name is never followed (a one-line note).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any, Literal

import click
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lassi.spec import DataProvenance, InvalidArtifactError, UsageError
from lassi.spec.contract.data_identity import (
    RENDERER_OPTION,
    recorded_renderer,
    renders_differently,
)
from lassi.spec.contract.errors import validation_message

# The 3D Shapes sources, whose splits are seeded (--data-seed, --n-train, ..., --correlate).
SPLIT_DATASETS = ("shapes3d", "shapes3d-h5")


class DatasetConfig(BaseModel):
    """A data source and its splits (3D Shapes is rendered; CelebA/folder read from disk)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Literal["shapes3d", "shapes3d-h5", "celeba", "folder", "fairface"] = "shapes3d"
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
    allow_symlinks_outside_root: bool = Field(
        False,
        description="celeba, folder: read symbolic links that lead out of the data root (a "
        "link farm); by default every file is read inside it",
    )

    @model_validator(mode="after")
    def _needs_root(self) -> DatasetConfig:
        if self.dataset != "shapes3d" and self.root is None:
            raise ValueError(f"{self.dataset} data is read from a folder: pass --data-root FOLDER")
        if self.correlate is not None and self.dataset not in SPLIT_DATASETS:
            raise ValueError(f"--correlate applies to shapes3d and shapes3d-h5 only, not to {self.dataset}")
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
        """What an artifact records of this data: kind, options and relative names only (a
        CSV inside the root by its relative name, one elsewhere by its SHA-256)."""
        options: dict[str, Any] = {"image_size": self.image_size}
        if self.dataset in SPLIT_DATASETS:
            options.update(n_train=self.n_train, n_val=self.n_val, n_test=self.n_test)
            options["correlate"] = self.correlate
        if self.csv is not None:
            options.update(csv_identity(self.csv, self.root))
        if self.dataset == "shapes3d":  # the images are code: the renderer's identity
            options[RENDERER_OPTION] = self.renderer_sha256()
        return DataProvenance(
            dataset=self.dataset,
            split=split,
            n_samples=n_samples,
            seed=self.seed,
            options=options,
        )

    def renderer_sha256(self) -> str:
        """The identity of the built-in renderer here at this image size (shapes3d only)."""
        from lassi.regulator.shapes3d import renderer_sha256

        return renderer_sha256(self.image_size)

    @classmethod
    def from_provenance(
        cls,
        data: DataProvenance,
        where: str | Path | None = None,
        root: Path | None = None,
        csv: Path | None = None,
        allow_symlinks_outside_root: bool = False,
    ) -> DatasetConfig:
        """Rebuild the config an artifact was made from (e.g. the spec's data for ``show``),
        reading the data from the caller's own ``root`` (and ``csv``): recorded paths are never
        followed.

        Options another party recorded that are not valid are an invalid artifact (exit 3,
        naming ``where``), not a usage error of whoever reads the file. Data on disk without a
        ``root`` is a usage error that says to pass ``--data-root``.
        """
        from pydantic import ValidationError

        name = where or "the artifact"
        if data.dataset != "shapes3d" and root is None:
            raise UsageError(where, f"records {data.dataset} data: pass --data-root FOLDER (your copy "
                             "of it; recorded paths are never followed)")
        if data.dataset == "shapes3d" and root is not None:
            raise UsageError(root, "--data-root does not apply: the data is 3D Shapes (generated)")
        options = dict(data.options)
        renderer = recorded_renderer(data, name)
        kwargs: dict[str, Any] = {"dataset": data.dataset, "seed": data.seed}
        kwargs["allow_symlinks_outside_root"] = allow_symlinks_outside_root
        if root is not None:
            kwargs["root"] = Path(root)
        for key in ("image_size", "n_train", "n_val", "n_test", "correlate"):
            if options.get(key) is not None:
                kwargs[key] = options[key]
        recorded_csv, csv_sha256 = options.get("csv"), options.get("csv_sha256")
        if csv is not None:
            if data.dataset != "folder":
                raise UsageError(csv, f"--csv applies to folder data only, not to {data.dataset}")
            kwargs["csv"] = Path(csv)
            if isinstance(csv_sha256, str) and file_sha256(Path(csv)) != csv_sha256:
                note(f"{csv} is not the CSV {name} was made with (its SHA-256 differs)")
        elif recorded_csv is not None and root is not None:
            from lassi.regulator.datasets import name_problem

            problem = name_problem(recorded_csv) if isinstance(recorded_csv, str) else "is not a name"
            if problem is None:
                kwargs["csv"] = Path(root) / recorded_csv
            else:  # an absolute path or a hostile name: never followed
                note(f"{name} records its CSV as {str(recorded_csv)[:200]!r}, which {problem}; it "
                     "is ignored (pass --csv to name the CSV)")
        elif csv_sha256 is not None and root is not None:
            raise UsageError(where, "was made with a CSV kept outside its data root (only its "
                             "SHA-256 is recorded): pass --csv with that CSV")
        try:
            config = cls(**kwargs)
        except ValidationError as error:
            message = validation_message(error, "data option")
            raise InvalidArtifactError(where, f"records data options that are not valid: {message}") from None
        if renderer is not None and config.dataset == "shapes3d":
            config.check_renderer(renderer, name)
        return config

    def check_rendered_as(self, recorded: DataProvenance | None, where: str | Path | None) -> None:
        """Refuse (exit 4) this 3D Shapes data where ``recorded`` (an input artifact's data,
        ``where``) is 3D Shapes at this image size from another renderer identity; nothing to
        check for other data (or for a provenance built here without the identity)."""
        if recorded is None or not recorded.dataset == self.dataset == "shapes3d":
            return
        renderer = recorded_renderer(recorded, where)
        if renderer is not None and recorded.options.get("image_size") == self.image_size:
            self.check_renderer(renderer, where)

    def check_renderer(self, recorded: str, where: str | Path, whose: str = "its") -> None:
        """Refuse (exit 4) rendered data recorded with another renderer identity than the one
        this machine renders with at this image size: the same options would make other images."""
        here = self.renderer_sha256()
        if recorded != here:
            raise renders_differently(where, recorded, here, whose)


def note(text: str) -> None:
    """One line on stderr, escaped (it may name a path from another party's file)."""
    from lassi.spec.contract.errors import printable

    print(f"note: {printable(text)}", file=sys.stderr)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, streamed in 1 MiB blocks (a missing file is a usage error)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as error:
        raise UsageError(path, f"cannot read ({error.strerror})") from None
    return digest.hexdigest()


def csv_identity(csv: Path, root: Path | None) -> dict[str, str]:
    """How a provenance records a folder source's CSV: ``{"csv": name}``, its name relative to
    the data root (``/``-separated), when it lies in the root; ``{"csv_sha256": digest}``
    otherwise (a path elsewhere would name another organisation's disk)."""
    from lassi.regulator.datasets import lexically_inside

    if root is not None and lexically_inside(csv, root):
        relative = os.path.relpath(os.path.abspath(csv), os.path.abspath(root))
        return {"csv": PurePath(relative).as_posix()}
    return {"csv_sha256": file_sha256(csv)}


def make_source(config: DatasetConfig) -> Any:
    """Open the configured data source (an ``ImageSource`` of ``lassi.regulator.datasets``)."""
    from lassi.regulator.datasets import CelebASource, FolderSource, Shapes3DSource

    if config.dataset in ("shapes3d", "shapes3d-h5"):
        splits = dict(image_size=config.image_size, seed=config.seed, n_train=config.n_train,
                      n_val=config.n_val, n_test=config.n_test, correlate=config.correlation())
        if config.dataset == "shapes3d":
            return Shapes3DSource(**splits)
        from lassi.regulator.shapes3d_h5 import Shapes3DH5Source

        return Shapes3DH5Source(config.root, **splits)
    allow = config.allow_symlinks_outside_root
    if config.dataset == "fairface":
        from lassi.regulator.fairface import FairFaceSource

        return FairFaceSource(config.root, image_size=config.image_size, allow_outside=allow)
    if config.dataset == "celeba":
        return CelebASource(config.root, image_size=config.image_size, allow_outside=allow)
    return FolderSource(
        config.root, csv=config.csv, image_size=config.image_size, allow_outside=allow
    )


def dataset_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """click options that build a ``DatasetConfig`` (passed on as ``data_config``); not given,
    they are None, so that options another data set does not use can be refused."""
    from lassi.spec.runtime.cli_options import default_of

    options = [
        click.option(
            "--dataset",
            type=click.Choice(["shapes3d", "shapes3d-h5", "celeba", "folder", "fairface"]),
            default=None,
            help="Data source [default: shapes3d; with --data-root inferred from the folder].",
        ),
        click.option(
            "--data-root",
            type=click.Path(path_type=Path),
            default=None,
            help="Folder of CelebA (official or CSV layout), of images with attributes.csv, or "
            "holding DeepMind's 3dshapes.h5 (shapes3d-h5) or FairFace's label CSVs.",
        ),
        click.option(
            "--csv",
            type=click.Path(path_type=Path),
            default=None,
            help="Folder source: attribute CSV (default ROOT/attributes.csv).",
        ),
        click.option(
            "--allow-symlinks-outside-root",
            is_flag=True,
            default=False,
            help="CelebA, FairFace, image folder: read symbolic links that lead out of "
            "--data-root (a link farm); by default every file is read inside it.",
        ),
        click.option(
            "--image-size",
            type=int,
            default=None,
            help=f"Image size (default: {default_of(DatasetConfig, 'image_size')}, or the spec's).",
        ),
        click.option(
            "--data-seed",
            type=int,
            default=None,
            help=f"Seed of the 3D Shapes splits [default: {default_of(DatasetConfig, 'seed')}].",
        ),
        click.option(
            "--n-train",
            type=int,
            default=None,
            help=f"3D Shapes: train split size [default: {default_of(DatasetConfig, 'n_train')}].",
        ),
        click.option(
            "--n-val",
            type=int,
            default=None,
            help=f"3D Shapes: validation split size [default: {default_of(DatasetConfig, 'n_val')}].",
        ),
        click.option(
            "--n-test",
            type=int,
            default=None,
            help=f"3D Shapes: test split size [default: {default_of(DatasetConfig, 'n_test')}].",
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


OPTION_NAMES = {
    "dataset": "--dataset",
    "root": "--data-root",
    "csv": "--csv",
    "image_size": "--image-size",
    "seed": "--data-seed",
    "n_train": "--n-train",
    "n_val": "--n-val",
    "n_test": "--n-test",
    "correlate": "--correlate",
}


def dataset_config_from_options(
    options: dict[str, Any],
    image_size: int | None = None,
    recorded: DataProvenance | None = None,
    where: str | Path | None = None,
) -> DatasetConfig:
    """Pop the ``dataset_options`` from a click kwargs dict and validate them.

    ``recorded``: the data an input artifact (``where``, e.g. the spec) records. Without
    ``--dataset`` and ``--data-root``, data on disk there is a usage error saying to pass
    ``--data-root`` (never a silent fall back to 3D Shapes); with a ``--data-root`` whose
    files do not tell the data set, the recorded kind is taken. Rendered data recorded at this
    image size with another renderer identity than this machine's is refused (exit 4): the
    images the artifact was made from render differently here.
    """
    from pydantic import ValidationError

    from lassi.spec.runtime.cli_options import default_of

    size = options.pop("image_size") or image_size or default_of(DatasetConfig, "image_size")
    root, csv = options.pop("data_root"), options.pop("csv")
    allow = bool(options.pop("allow_symlinks_outside_root", False))
    given = options.pop("dataset")
    shapes_only = {
        "--data-seed": options.pop("data_seed"),
        "--n-train": options.pop("n_train"),
        "--n-val": options.pop("n_val"),
        "--n-test": options.pop("n_test"),
        "--correlate": options.pop("correlate"),
    }
    kind = None if recorded is None else recorded.dataset
    if given is not None:
        dataset = given
    elif root is not None:
        dataset = infer_dataset(root, csv, recorded=kind)
    elif csv is not None:
        dataset = "folder"
    elif kind is not None and kind != "shapes3d":
        raise UsageError(
            where,
            f"records {kind} data: pass --data-root FOLDER (your copy of the {kind} data; "
            "recorded paths are never followed)",
        )
    else:
        dataset = "shapes3d"
    flags = [flag for flag, value in shapes_only.items() if value is not None]
    if dataset not in SPLIT_DATASETS and flags:
        raise UsageError(
            None,
            f"{', '.join(flags)} applies to the generated 3D Shapes splits only; {dataset} uses "
            "the splits of its files (cap the training images with --max-train)",
        )
    if dataset == "shapes3d" and root is not None:
        raise UsageError(root, "--data-root does not apply to --dataset shapes3d (it is generated)")
    if dataset == "shapes3d" and allow:
        raise UsageError(None, "--allow-symlinks-outside-root applies to data on disk, not to shapes3d")
    if dataset != "folder" and csv is not None:
        raise UsageError(csv, f"--csv applies to --dataset folder only, not to {dataset}")
    if dataset != "shapes3d" and root is None:
        raise UsageError(None, f"--dataset {dataset} reads images from a folder: pass --data-root FOLDER")
    values = {key.lstrip("-").replace("-", "_"): v for key, v in shapes_only.items() if v is not None}
    if "data_seed" in values:
        values["seed"] = values.pop("data_seed")
    try:
        config = DatasetConfig(
            dataset=dataset,
            root=root,
            csv=csv,
            image_size=size,
            allow_symlinks_outside_root=allow,
            **values,
        )
    except ValidationError as error:
        raise UsageError(None, validation_message(error, "data option", OPTION_NAMES)) from None
    config.check_rendered_as(recorded, where)
    return config


def check_data_root(root: Path) -> Path:
    """``root`` when it is an existing folder; else a usage error saying it does not exist (a
    misspelt folder) or is not a folder."""
    root = Path(root)
    if not root.exists():
        raise UsageError(root, "does not exist (--data-root)")
    if not root.is_dir():
        raise UsageError(root, "is not a folder (--data-root)")
    return root


def infer_dataset(root: Path | None, csv: Path | None, recorded: str | None = None) -> str:
    """The data set of a ``--data-root`` given without ``--dataset``: CelebA when one of its
    attribute files is there, a folder source when ``--csv`` or ``attributes.csv`` is, else the
    kind an input artifact records (``recorded``); refuse otherwise (3D Shapes has no folder).
    A folder that does not exist is said to not exist."""
    if root is None:
        return "folder" if csv is not None else "shapes3d"
    root = check_data_root(root)
    if any((root / name).is_file() for name in ("list_attr_celeba.txt", "list_attr_celeba.csv")):
        return "celeba"
    if (root / "3dshapes.h5").is_file():
        return "shapes3d-h5"
    if (root / "fairface_label_train.csv").is_file():
        return "fairface"
    if csv is not None or (root / "attributes.csv").is_file():
        return "folder"
    if recorded is not None and recorded != "shapes3d":
        return recorded
    raise UsageError(
        root,
        "cannot tell the data set from the folder (no list_attr_celeba.txt/.csv, no "
        "attributes.csv); pass --dataset celeba or --dataset folder",
    )
