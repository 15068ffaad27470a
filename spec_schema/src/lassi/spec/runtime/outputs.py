"""Outputs that cannot destroy data: every command that writes checks its outputs first.

``check_outputs`` runs before any work (a long training must not end in an error at its last
step, nor overwrite what it read): an output may not be one of the command's inputs, nor
another of its outputs (e.g. ``--out report.json`` colliding with the report's own side file);
an existing output must be a regular file (writing "into" a device node or named pipe is
refused); its folder must be writable and the temporary name ``atomic_path`` uses must fit the
file system's name limit. ``atomic_group`` writes a set of files all-or-nothing.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from lassi.spec.contract.errors import UsageError

# ``atomic_path`` names its temporary "." + NAME + "." + 8 random characters (mkstemp) + ".tmp".
TEMP_NAME_EXTRA = len("..") + 8 + len(".tmp")


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)
    return False


def _existing_ancestor(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def checkpoint_of(out: str | Path) -> Path:
    """The resumable checkpoint a long command keeps beside its output (``OUT.ckpt``)."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def check_outputs(
    outputs: Sequence[str | Path | None], inputs: Iterable[str | Path | None] = ()
) -> None:
    """Refuse (exit 2) outputs that would destroy an input, each other, an earlier run's finished
    output (any existing file but a ``.ckpt`` checkpoint, which is resumed), or cannot be
    written."""
    outs = [Path(p) for p in outputs if p is not None]
    ins = [Path(p) for p in inputs if p is not None]
    for i, out in enumerate(outs):
        for other in outs[:i]:
            if _same(out, other):
                if other is outs[0]:  # the main output and a side file derived from it
                    hint = f"{other.stem}.safetensors" if other.suffix != ".safetensors" else (
                        f"another name than {other.name}"
                    )
                    raise UsageError(
                        other,
                        "is both the output and a side file this command writes beside it "
                        f"(such as its .json or .ckpt); give the output its own name, e.g. {hint}",
                    )
                raise UsageError(out, f"is given as two outputs (also {other})")
        for source in ins:
            if _same(out, source):
                raise UsageError(out, "is also an input of this command; refusing to overwrite it")
        if os.path.lexists(out):
            try:
                mode = os.stat(out).st_mode
            except OSError:
                raise UsageError(out, "exists but cannot be inspected (a dangling link?)") from None
            if not stat.S_ISREG(mode):
                raise UsageError(out, "exists and is not a regular file; refusing to write to it")
            if not out.name.endswith(".ckpt"):  # a checkpoint is resumed, not overwritten
                raise UsageError(
                    out,
                    "exists already (the output of an earlier run); refusing to overwrite it: "
                    "delete it or choose another output name",
                )
        folder = _existing_ancestor(out.parent)
        if not folder.is_dir():
            raise UsageError(out, f"cannot be created: {folder} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(out, f"cannot be written: folder {folder} is not writable")
        try:
            name_max = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            name_max = 255
        if len(os.fsencode(out.name)) + TEMP_NAME_EXTRA > name_max:
            raise UsageError(
                out, f"name is too long for the file system (limit {name_max} bytes with the temporary suffix)"
            )


@contextlib.contextmanager
def atomic_group(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Yield temporary paths for a set of outputs; rename all of them only if all were written.

    If the body raises, none of the set appears (a report without its side files, or side files
    without their report, is never left behind).
    """
    from lassi.spec.contract.io import atomic_path

    with contextlib.ExitStack() as stack:
        temps = [stack.enter_context(atomic_path(p)) for p in paths]
        yield temps
