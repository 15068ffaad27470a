"""Click options the role CLIs share, each declared once, and options whose default is a model's.

The role CLIs read them as ``from lassi.spec.runtime import cli_options as option``:
``@option.out(...)``, ``@option.quiet``, ``@option.per_sample`` (``--threads``, ``--device`` and
the executor's options), ``@option.model(Model, "field")``.

A default is written once, in the pydantic model (or the Python API function) it configures:
:func:`model` reads it from there (:func:`default_of`), with the bounds of the model's
``Field`` shown beside it in the help. A model named as ``"module:Name"`` is imported only when
the command runs or its help is printed, so ``inspect`` or ``predict`` never pay for torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import click

from lassi.spec.runtime.cli import THREADS_PER_CORE, set_threads, threads_callback

FILE = click.Path(dir_okay=False, path_type=Path)
"""A file option or argument (a folder is refused by click before the command runs)."""
FOLDER = click.Path(file_okay=False, path_type=Path)

Source = type | Callable[..., Any] | str
"""A pydantic model, a dataclass, a function (its keyword defaults), or ``"module:Name"``."""


def resolve(source: Source) -> Any:
    """``source`` itself, or the object a ``"module:Name"`` string names (imported now)."""
    if not isinstance(source, str):
        return source
    module, _, name = source.partition(":")
    return getattr(importlib.import_module(module), name)


def default_of(source: Source, name: str) -> Any:
    """The default of field ``name`` of a pydantic model or dataclass, or of the keyword
    parameter ``name`` of a function: where the default is written."""
    target = resolve(source)
    model_fields = getattr(target, "model_fields", None)
    if isinstance(model_fields, dict):
        field = model_fields[name]
        if field.is_required():
            raise ValueError(f"{target.__name__}.{name} has no default")
        return field.get_default(call_default_factory=True)
    if dataclasses.is_dataclass(target):
        (field,) = [f for f in dataclasses.fields(target) if f.name == name]
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        if field.default is dataclasses.MISSING:
            raise ValueError(f"{target.__name__}.{name} has no default")
        return field.default
    parameter = inspect.signature(target).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise ValueError(f"{target.__name__}({name}) has no default")
    return parameter.default


def bounds_of(source: Source, name: str) -> str | None:
    """The bounds a pydantic ``Field`` puts on ``name``, as click writes a range (``x>=1``,
    ``0<x<1``), or None."""
    target = resolve(source)
    field = getattr(target, "model_fields", {}).get(name)
    if field is None:
        return None
    low = high = None
    for item in field.metadata:
        for attr, side in (("ge", "low"), ("gt", "low"), ("le", "high"), ("lt", "high")):
            value = getattr(item, attr, None)
            if value is None:
                continue
            op = "<=" if attr in ("ge", "le") else "<"
            if side == "low":
                low = (value, op)
            else:
                high = (value, op)
    if low and high:
        return f"{low[0]}{low[1]}x{high[1]}{high[0]}"
    if low:
        return f"x{'>=' if low[1] == '<=' else '>'}{low[0]}"
    if high:
        return f"x{high[1]}{high[0]}"
    return None


def _click_type(source: Source, name: str) -> Any:
    """int, float, str or a Choice of a Literal, from the field's annotation (a model given as
    a class, not a string: that one is not imported before it is needed)."""
    field = resolve(source).model_fields[name]
    annotation = field.annotation
    options = [a for a in get_args(annotation) if a is not type(None)]
    if options and get_origin(annotation) is not Literal:
        annotation = options[0]
    if get_origin(annotation) is Literal:
        return click.Choice([str(v) for v in get_args(annotation)])
    return annotation


class ModelOption(click.Option):
    """A click option whose default (and range in the help) is read from ``source`` when the
    command runs or its help is printed (:func:`default_of`, :func:`bounds_of`);
    ``shown``: how a non-scalar default is written on the command line (e.g. a list)."""

    def __init__(
        self,
        param_decls: Sequence[str],
        *,
        source: Source,
        field: str,
        shown: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.source, self.field, self.shown = source, field, shown
        kwargs.setdefault("show_default", True)
        super().__init__(param_decls, default=self._model_default, **kwargs)

    def _model_default(self) -> Any:
        value = default_of(self.source, self.field)
        return value if self.shown is None else self.shown(value)

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        return super().get_default(ctx, call=True)  # the value, also in the help

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        bounds = bounds_of(self.source, self.field)
        if bounds:
            extra["range"] = bounds
        return extra


def model(
    source: Source, field: str, *decls: str, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--FIELD`` (or the flags in ``decls``) with ``source``'s default for ``field``, passed on
    as ``field`` unless ``decls`` names another parameter; ``type`` is taken from the annotation
    when ``source`` is a class, and must be given for a ``"module:Name"``."""
    if "type" not in kwargs:
        if isinstance(source, str):
            raise TypeError(f"option.model({source!r}, {field!r}) needs type=")
        kwargs["type"] = _click_type(source, field)
    decls = decls or ("--" + field.replace("_", "-"),)
    if not any(name.isidentifier() for name in decls):
        decls = (*decls, field)
    return click.option(*decls, cls=ModelOption, source=source, field=field, **kwargs)


def out(help: str, *, required: bool = True, folder: bool = False) -> Callable[..., Any]:
    """``--out``: the file (or with ``folder``, the folder) a command writes."""
    return click.option(
        "--out", type=FOLDER if folder else FILE, required=required, default=None, help=help
    )


quiet = click.option("--quiet", is_flag=True, help="No progress bar.")
"""``--quiet``: no progress bar (the result lines are printed either way)."""


def html(what: str) -> Callable[..., Any]:
    """``--html``: also write a self-contained HTML page (``lassi.spec.runtime.html_page``) of
    ``what``."""
    return click.option(
        "--html", type=FILE, default=None, help=f"Also write a self-contained HTML page{what}."
    )


def json(help: str) -> Callable[..., Any]:
    """``--json``: print the command's result as JSON (passed on as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def threads(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--threads N`` (default: all cores), checked by ``lassi.spec.runtime.cli.check_threads``."""
    return click.option(
        "--threads",
        type=int,
        default=None,
        callback=threads_callback,
        help=f"CPU threads of torch and onnxruntime (default: all cores; at most "
        f"{THREADS_PER_CORE} per core).",
    )(command)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep an executor option for :func:`running` (the command itself does not take them)."""
    ctx.meta[f"lassi.{param.name}"] = value
    return value


def executor(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--executor local|ray``, ``--workers``, ``--ray-address`` and ``--ray-verbose`` for a
    per-sample loop; the command does not take them: :func:`running` reads them."""
    command = click.option(
        "--ray-verbose",
        is_flag=True,
        expose_value=False,
        callback=_remember,
        help="Show Ray's own log lines (hidden by default).",
    )(command)
    command = click.option(
        "--ray-address",
        default=None,
        expose_value=False,
        callback=_remember,
        help="Address of a running Ray cluster, HOST:PORT or ray://HOST:PORT (default with "
        "--executor ray: a local one). An address where no cluster answers within "
        "10 s is an error.",
    )(command)
    command = model(
        "lassi.spec.runtime.executors:make_executor",
        "workers",
        type=click.IntRange(min=1),
        expose_value=False,
        callback=_remember,
        help="Ray actors (each loads the model once; --threads torch threads each).",
    )(command)
    return click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        expose_value=False,
        callback=_remember,
        help="Where the samples are computed; the results are identical either way.",
    )(command)


def compute(command: Callable[..., Any], *, executor_options: bool = False) -> Callable[..., Any]:
    """``--threads`` and ``--device`` (with ``executor_options``: ``--executor``, ``--workers``,
    ``--ray-address``, ``--ray-verbose`` too), where a command computes."""
    from lassi.spec.runtime.device import device_option

    command = device_option(command)
    if executor_options:
        command = executor(command)
    return threads(command)


def per_sample(command: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`compute` with the executor's options, for a per-sample loop."""
    return compute(command, executor_options=True)


@contextmanager
def running(threads: int | None) -> Iterator[Any]:
    """Set the torch threads, then open the executor the options of :func:`executor` name (a
    context manager; Ray is imported only for 'ray')."""
    from lassi.spec.runtime.executors import make_executor

    set_threads(threads)
    meta = click.get_current_context().meta
    with make_executor(
        meta["lassi.executor"],
        workers=meta["lassi.workers"],
        address=meta["lassi.ray_address"],
        threads=threads or 1,
        verbose=bool(meta["lassi.ray_verbose"]),
    ) as runner:
        yield runner
