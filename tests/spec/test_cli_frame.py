"""The CLI frame's error line: a command stopped inside a progress bar ends with its one-line
error on a line of its own, and the bar is not drawn again after it."""

from __future__ import annotations

import sys

import click
import pytest
from tqdm import tqdm

from lassi.spec.contract.errors import UsageError
from lassi.spec.runtime.cli import LassiGroup


@click.group(cls=LassiGroup)
def frame() -> None:
    """A role CLI in miniature."""


@frame.command()
@click.option("--interrupt", is_flag=True)
def work(interrupt: bool) -> None:
    bar = tqdm(total=10, desc="work", file=sys.stderr, mininterval=0)
    bar.update(3)
    if interrupt:
        raise KeyboardInterrupt
    raise UsageError("data.csv", "line 3: no such column")


@pytest.mark.parametrize(
    ("extra", "code", "line"),
    [([], 2, "error: data.csv: line 3: no such column"),
     (["--interrupt"], 130, "interrupted: run the same command again to resume")],
)  # fmt: skip
def test_the_error_line_follows_an_open_bar_and_is_last(
    capfd: pytest.CaptureFixture[str], extra: list[str], code: int, line: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        frame.main(["work", *extra], standalone_mode=True)
    assert stopped.value.code == code
    err = capfd.readouterr().err
    lines = [part.split("\r")[-1] for part in err.rstrip("\n").split("\n")]
    assert lines[-1] == line, err
    assert "3/10" in lines[-2], err  # the bar, closed where it stood, on the line before
    assert err.count(line) == 1 and not err.endswith("\r"), err
