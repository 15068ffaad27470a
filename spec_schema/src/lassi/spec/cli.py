"""Shared command-line frame of the three role CLIs (thin click layers over the Python API).

``LassiGroup`` turns every error a user can cause into one line on stderr that names the file
and the problem, with the exit status of its class (see ``lassi.spec.errors``), and never a
traceback (set ``LASSI_DEBUG=1`` to see one). ``inspect_command`` is the ``inspect`` command
every role offers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from lassi.spec.errors import LassiError
from lassi.spec.io import describe, read_artifact
from lassi.spec.models import ARTIFACT_KINDS

INTERRUPTED_EXIT = 130


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_exit_code(error: BaseException) -> int | None:
    """The exit status of a user-facing error, or None for an unexpected one.

    Besides ``LassiError``, any exception class with an integer ``exit_code`` attribute
    (e.g. ``lassi.regulator.datasets.DataError``) is treated as user-facing.
    """
    code = getattr(error, "exit_code", None)
    if isinstance(error, LassiError) or isinstance(code, int):
        return int(code) if code is not None else 1
    return None


class LassiGroup(click.Group):
    """A click group that reports errors as one line and a class-specific exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted: run the same command again to resume", err=True)
            raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
        except Exception as error:
            if os.environ.get("LASSI_DEBUG"):
                raise
            code = error_exit_code(error)
            if code is None:
                click.echo(
                    f"error: internal error ({type(error).__name__}: {_one_line(str(error))}); "
                    "set LASSI_DEBUG=1 for a traceback",
                    err=True,
                )
                code = 1
            else:
                click.echo(f"error: {_one_line(str(error))}", err=True)
            raise click.exceptions.Exit(code) from None


def inspect_command() -> click.Command:
    """``inspect FILE``: print an artifact's kind, metadata and tensor table."""

    @click.command("inspect")
    @click.argument("file", required=False, type=click.Path(dir_okay=True, path_type=Path))
    @click.option(
        "--schema",
        "schema_kind",
        type=click.Choice(sorted(ARTIFACT_KINDS)),
        help="Print the JSON Schema of an artifact kind instead of reading a file.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
    def inspect(file: Path | None, schema_kind: str | None, as_json: bool) -> None:
        """Validate FILE and print its kind, metadata and tensors (exit 0 if valid)."""
        if schema_kind is not None:
            if file is not None:
                raise click.UsageError("give either FILE or --schema, not both")
            click.echo(json.dumps(ARTIFACT_KINDS[schema_kind].model_json_schema(), indent=2))
            return
        if file is None:
            raise click.UsageError("missing FILE (or --schema KIND)")
        if file.suffix == ".onnx":
            from lassi.spec.onnx_check import describe_onnx

            click.echo(describe_onnx(file))
            return
        artifact = read_artifact(file)
        if as_json:
            record = {
                "sha256": artifact.sha256,
                "metadata": artifact.meta.model_dump(mode="json"),
                "tensors": {
                    name: {"dtype": str(a.dtype), "shape": list(a.shape)}
                    for name, a in sorted(artifact.tensors.items())
                },
            }
            click.echo(json.dumps(record, indent=2))
        else:
            click.echo(describe(artifact))

    return inspect


def role_group(name: str, version: str, help_text: str) -> click.Group:
    """The top-level click group of one role, with --version and ``inspect``."""

    @click.group(name=name, cls=LassiGroup, help=help_text)
    @click.version_option(version, prog_name=name)
    def group() -> None:
        pass

    group.add_command(inspect_command())
    return group


def tool_name(distribution: str) -> str:
    """``"<distribution> <version>"`` as recorded in every artifact's ``tool`` field."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{distribution} {version(distribution)}"
    except PackageNotFoundError:
        return f"{distribution} (not installed)"
