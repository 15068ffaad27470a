"""The role CLIs' defaults are read from the models they configure (lassi.spec.runtime.cli_options)."""

from __future__ import annotations

import re
from typing import Literal

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field

from factories import WITHOUT_TORCH, python_child
from lassi.spec.runtime import cli_options as option
from lassi.spec.runtime.cli_options import ModelOption, bounds_of, default_of


class Settings(BaseModel):
    steps: int = Field(7, ge=1, le=16)
    rate: float = Field(0.5, gt=0, lt=1)
    shape: Literal["ball", "cube"] = "cube"
    widths: list[int] = Field(default_factory=lambda: [4, 2])
    name: str


def settings_command() -> click.Command:
    @click.command()
    @option.model(Settings, "steps")
    @option.model(Settings, "rate", "--learning-rate")
    @option.model(Settings, "shape")
    @option.model(Settings, "widths", type=str, shown=lambda v: ",".join(map(str, v)))
    def command(**values: object) -> None:
        click.echo(repr(sorted(values.items())))

    return command


def test_the_model_default_is_the_option_default_and_shown_with_its_bounds() -> None:
    runner = CliRunner()
    out = runner.invoke(settings_command(), []).output
    assert out.strip() == repr(
        sorted({"steps": 7, "rate": 0.5, "shape": "cube", "widths": "4,2"}.items())
    )
    given = runner.invoke(settings_command(), ["--learning-rate", "0.25", "--shape", "ball"])
    assert "('rate', 0.25)" in given.output and "('shape', 'ball')" in given.output
    bad = runner.invoke(settings_command(), ["--shape", "sphere"])
    assert bad.exit_code == 2 and "'sphere' is not one of 'ball', 'cube'" in bad.output
    help_text = " ".join(runner.invoke(settings_command(), ["--help"]).output.split())
    assert "[default: 7; 1<=x<=16]" in help_text and "[default: 0.5; 0<x<1]" in help_text
    assert "[default: 4,2]" in help_text


def test_default_of_reads_models_dataclasses_and_functions() -> None:
    def api(path: str, count: int = 5) -> None: ...

    assert default_of(Settings, "widths") == [4, 2] and default_of(api, "count") == 5
    assert bounds_of(Settings, "rate") == "0<x<1" and bounds_of(Settings, "shape") is None
    for source, name in ((Settings, "name"), (api, "path")):
        with pytest.raises(ValueError, match="has no default"):
            default_of(source, name)


@pytest.mark.parametrize("role", ["regulator", "producer", "consumer"])
def test_every_model_option_of_the_role_clis_names_a_default(role: str) -> None:
    """A renamed or removed field fails here, not when a user runs the command."""
    import importlib

    main = importlib.import_module(f"lassi.{role}.cli").main
    count = 0
    for command in main.commands.values():
        for param in command.params:
            if isinstance(param, ModelOption):
                context = click.Context(command)
                value = param.get_default(context)
                assert value == param.type_cast_value(context, value), (command.name, param.name)
                count += 1
    assert count >= 5


@pytest.mark.slow
def test_a_default_is_read_without_torch_where_the_command_needs_none() -> None:
    """``predict`` reads its defaults from the onnxruntime path's function: its help (which
    shows them) runs with torch unimportable."""
    script = WITHOUT_TORCH + (
        "from click.testing import CliRunner\n"
        "from lassi.consumer.cli import main\n"
        "result = CliRunner().invoke(main, ['predict', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'torch' not in sys.modules\n"
        "print(' '.join(result.output.split()))\n"
    )
    assert re.search(r"--n INTEGER [^[]*\[default: 100000\]", python_child(script))
