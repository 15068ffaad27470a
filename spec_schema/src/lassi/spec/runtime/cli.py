"""Shared command-line frame of the three role CLIs (thin click layers over the Python API).

``LassiGroup`` turns every error a user can cause into one line on stderr that names the file
and the problem, with the exit status of its class (see ``lassi.spec.contract.errors``), and never a
traceback (set ``LASSI_DEBUG=1`` to see one). ``inspect_command`` is the ``inspect`` command
every role offers.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lassi.spec.contract.errors import LassiError, printable
from lassi.spec.contract.files import pinned_reads
from lassi.spec.contract.io import describe, read_artifact
from lassi.spec.contract.models import ARTIFACT_KINDS

INTERRUPTED_EXIT = 130


def _one_line(text: str) -> str:
    return " ".join(printable(text).split())


def _os_error_line(error: OSError) -> str:
    """A file-system error (read-only, disk full, name too long...) as one line naming the file."""
    reason = error.strerror or type(error).__name__
    if error.filename is None:  # writes through lassi.spec.contract.io.atomic_path name their file
        return f"{reason} (the operating system did not say on which file; LASSI_DEBUG=1 shows where)"
    return f"{error.filename}: {reason}"


def end_progress_bars() -> None:
    """Close the progress bars a stopped command left open, so that its error line starts a line
    of its own and is the last one (an open bar is otherwise redrawn after it when collected)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


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
    """A click group that reports errors as one line and a class-specific exit status.

    Every ``--threads`` option of its commands is checked against the machine
    (:func:`check_threads`), however the command declared it, and every ``--lr`` is a finite
    step size in (0, ``MAX_LR``] before any work.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        for param in cmd.params:
            if param.name == "threads" and getattr(param, "callback", None) is not threads_callback:
                param.callback = _chained(param.callback)
            if param.name == "lr" and getattr(param, "callback", None) is None:
                param.callback = _lr_callback
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with pinned_reads():  # one read per file for the whole command (lassi.spec.contract.files)
                return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            end_progress_bars()
            click.echo("interrupted: run the same command again to resume", err=True)
            raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
        except Exception as error:
            if os.environ.get("LASSI_DEBUG"):
                raise
            end_progress_bars()
            code = error_exit_code(error)
            if code is None and isinstance(error, OSError) and error.errno is not None:
                click.echo(f"error: {_one_line(_os_error_line(error))}", err=True)
                raise click.exceptions.Exit(2) from None
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
            from lassi.spec.contract.onnx_check import describe_onnx

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
            click.echo(json.dumps(record, indent=2, allow_nan=False))
        else:
            click.echo(describe(artifact))

    return inspect


def trusted_inputs(
    *parameters: str, regulator: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--trusted-key`` to a command whose ``parameters`` are another party's files, and
    ``--regulator-key`` when it reads the regulator's spec (the ``regulator`` parameters).

    With one or more trusted keys (or ``LASSI_TRUSTED_KEYS``, paths separated by ``:``), every
    named input must carry a valid ``.sig`` by one of them before the command runs; the spec must
    carry one by a regulator key (``--regulator-key`` or ``LASSI_REGULATOR_KEYS``; without one,
    by a trusted key) whenever any key is given (``lassi.spec.contract.signing.verify_inputs``).
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(
            *args: Any,
            trusted_keys: tuple[Path, ...] = (),
            regulator_keys: tuple[Path, ...] = (),
            **kwargs: Any,
        ) -> Any:
            from lassi.spec.contract.signing import (
                REGULATOR_KEYS_ENV,
                TRUSTED_KEYS_ENV,
                keys_from,
                verify_inputs,
            )

            verify_inputs(
                [kwargs.get(name) for name in parameters],
                [kwargs.get(name) for name in regulator],
                keys_from(trusted_keys, TRUSTED_KEYS_ENV),
                keys_from(regulator_keys, REGULATOR_KEYS_ENV) if regulator else [],
            )
            return function(*args, **kwargs)

        command = click.option(
            "--trusted-key",
            "trusted_keys",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Public key (PEM) whose signature the other party's input files must carry.",
        )(wrapper)
        if not regulator:
            return command
        return click.option(
            "--regulator-key",
            "regulator_keys",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="The regulator's public key (PEM): the spec must carry its signature "
            "(checked whenever any key is given; without this option, a --trusted-key's).",
        )(command)

    return decorate


def signing_commands() -> list[click.Command]:
    """``keygen``, ``sign`` and ``verify-signature`` (Ed25519, see lassi.spec.contract.signing)."""

    @click.command("keygen")
    @click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        help="Private key file to write; the public key goes to OUT.pub.",
    )
    def keygen(out: Path) -> None:
        """Create an Ed25519 key pair for signing artifacts."""
        from lassi.spec.contract.signing import generate_keypair
        from lassi.spec.runtime.outputs import check_outputs

        public = out.with_name(out.name + ".pub")
        check_outputs([out, public])
        key = generate_keypair(out, public)
        click.echo(f"wrote {out} (private, keep it) and {public} (share it); key id {key}")

    @click.command("sign")
    @click.argument(
        "files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
    )
    @click.option(
        "--key", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Private key."
    )
    def sign(files: tuple[Path, ...], key: Path) -> None:
        """Write a detached signature FILE.sig for each file."""
        from lassi.spec.contract.signing import sign_file, signature_path
        from lassi.spec.runtime.outputs import check_outputs

        check_outputs([signature_path(p) for p in files], inputs=[*files, key])
        for path in files:
            click.echo(f"wrote {sign_file(path, key)}")

    @click.command("verify-signature")
    @click.argument(
        "files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
    )
    @click.option(
        "--trusted-key",
        "trusted_keys",
        multiple=True,
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Trusted public key(s).",
    )
    def verify_signature(files: tuple[Path, ...], trusted_keys: tuple[Path, ...]) -> None:
        """Check that each file is signed by a trusted key (exit 5 if not)."""
        from lassi.spec.contract.signing import verify_file

        for path in files:
            click.echo(f"{path}: signed by key {verify_file(path, trusted_keys)}")

    return [keygen, sign, verify_signature]


def role_group(tool: str, help_text: str) -> click.Group:
    """The top-level click group of one role (``tool``: its ``"<distribution> <version>"``, see
    :func:`tool_name`): --version, ``inspect`` and the signing commands."""
    name, version = tool.split(" ", 1)

    @click.group(name=name, cls=LassiGroup, help=help_text)
    @click.version_option(version, prog_name=name)
    def group() -> None:
        pass

    group.add_command(inspect_command())
    for command in signing_commands():
        group.add_command(command)
    return group


def tool_name(distribution: str) -> str:
    """``"<distribution> <version>"`` as recorded in every artifact's ``tool`` field."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{distribution} {version(distribution)}"
    except PackageNotFoundError:
        return f"{distribution} (not installed)"


def validated(model: type, where: str, **values: Any) -> Any:
    """Build a config model from command-line values; invalid ones become a one-line UsageError."""
    from pydantic import ValidationError

    from lassi.spec.contract.errors import UsageError, validation_message

    try:
        return model(**values)
    except (ValidationError, ValueError) as error:
        if isinstance(error, ValidationError):
            message = validation_message(error, "option")
        else:
            message = str(error)
        raise UsageError(None, f"{where}: {message}") from None


THREADS_PER_CORE = 4


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_threads() -> int:
    """The largest ``--threads``: 4 threads per core. More only contend for the same cores,
    and every thread costs a stack and per-thread buffers in torch and onnxruntime (a million
    of them exhaust memory or crash the process instead of running faster)."""
    return THREADS_PER_CORE * cpu_cores()


def check_threads(threads: int | None, option: str = "--threads") -> int | None:
    """``threads`` if it is None (the default) or in 1..:func:`max_threads`, else a one-line
    UsageError (exit 2) that says why the bound is what it is."""
    if threads is None:
        return None
    limit = max_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= limit:
        from lassi.spec.contract.errors import UsageError

        raise UsageError(
            None,
            f"{option} must be between 1 and {limit} ({THREADS_PER_CORE} per CPU core, "
            f"{cpu_cores()} cores here; more only slow the run down and cost memory), "
            f"got {threads}",
        )
    return threads


MAX_LR = 1e3  # Adam's step size: far above any useful value, far below float32's overflow


def _lr_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """``--lr``: a finite Adam step size in (0, MAX_LR]; larger ones only diverge (or overflow
    float32 inside the optimiser, an error no user could read)."""
    if value is not None and not (isinstance(value, float) and 0 < value <= MAX_LR):
        from lassi.spec.contract.errors import UsageError

        raise UsageError(None, f"--lr must be a finite number in (0, {MAX_LR:g}], got {value!r}")
    return value


def threads_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    return check_threads(value, "--" + (param.name or "threads").replace("_", "-"))


def _chained(callback: Callable[..., Any] | None) -> Callable[..., Any]:
    """``callback`` (a command's own, if any) after the ``--threads`` check."""
    if callback is None:
        return threads_callback

    def run(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        return callback(ctx, param, threads_callback(ctx, param, value))

    return run


def set_threads(threads: int | None) -> None:
    """``--threads``: the number of torch CPU threads (torch imported only when given)."""
    if check_threads(threads):
        import torch

        torch.set_num_threads(threads)
