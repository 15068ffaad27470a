"""The one resumable per-sample loop of lassi (center smoothing, randomized smoothing).

Certification is per sample: with per-sample seeds (:mod:`lassi.spec.runtime.seeding`) the result of a
sample depends only on the sample, never on which process computed it or when. So a long loop is
"a function of one sample" (its position → a dict of per-sample values such as ``z_cs``, ``r_cs``,
``status``) mapped over the positions, with the values written into preallocated result arrays
(one row per sample).

An :class:`Executor` runs the function; :class:`LocalExecutor` calls it in order in this process.
Whatever the executor, :class:`PerSampleLoop` commits results to the arrays and to the checkpoint
strictly in position order, so a checkpoint always holds a prefix of finished rows and a killed
run resumes with every committed sample kept. The checkpoint (``save_checkpoint``) is written
atomically, every ``checkpoint_interval()`` seconds and when the loop is interrupted by an
exception; a tqdm bar shows rate, ETA and ``certified=a/b``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from lassi.spec.contract.errors import InvalidArtifactError
from lassi.spec.contract.torch_state import checkpoint_interval, load_checkpoint, save_checkpoint

SampleFn = Callable[[int], Mapping[str, Any]]
"""One sample's work: position in the result arrays → {result name: that sample's row}."""


class Executor(Protocol):
    """Runs a :data:`SampleFn` over positions.

    ``map`` yields one ``(position, values)`` pair per position it was given, each exactly once, in
    any order (a parallel executor yields them as they finish). It should compute positions in
    roughly the given order: the loop holds early finishers back until every earlier position has
    come, and only committed rows survive a kill.
    """

    def map(
        self, fn: SampleFn, positions: Sequence[int]
    ) -> Iterable[tuple[int, Mapping[str, Any]]]: ...


class LocalExecutor:
    """Calls the sample function in this process, one position after the other."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(
        self, fn: SampleFn, positions: Sequence[int]
    ) -> Iterator[tuple[int, Mapping[str, Any]]]:
        for position in positions:
            yield position, fn(position)


class SampleCheckpoint:
    """Rows ``[:done]`` of a loop's result arrays, saved atomically and restored on creation.

    On creation the rows finished by an interrupted run with the same ``stage``, ``key`` and
    ``data`` (the identity of the data the rows were computed from) are copied into ``result`` (``done`` of them); ``step_done(i)`` saves rows ``[:i]`` when
    ``checkpoint_interval()`` seconds have passed and ``i`` is not the last row (``force``: now,
    in any case); ``finish()`` removes the file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        tool: str,
        stage: str,
        key: str,
        result: dict[str, np.ndarray],
        data: str | None = None,
    ) -> None:
        self.path, self.tool, self.stage, self.key, self.result, self.data = (
            Path(path),
            tool,
            stage,
            key,
            result,
            data,
        )
        self.total = len(next(iter(result.values())))
        self.done = 0
        restored = load_checkpoint(self.path, stage=stage, key=key, modules={}, data=data)
        if restored is not None:
            self.done, _, extra = restored
            for name, array in result.items():
                rows = extra.get(name)
                if (
                    rows is None
                    or not 0 <= self.done <= min(len(rows), self.total)
                    or rows.shape[1:] != array.shape[1:]
                    or rows.dtype != array.dtype
                ):
                    raise InvalidArtifactError(
                        self.path,
                        f"checkpoint is damaged (rows '{name}' do not hold the {self.done} "
                        "samples it says are done); delete it to start the run over",
                    )
                array[: self.done] = rows[: self.done]
        self._clock = time.monotonic
        self._last = self._clock()

    def step_done(self, finished: int, force: bool = False) -> None:
        """Rows ``[:finished]`` are final; checkpoint them if one is due."""
        if force or (finished < self.total and self._clock() - self._last >= checkpoint_interval()):
            save_checkpoint(
                self.path,
                tool=self.tool,
                stage=self.stage,
                key=self.key,
                step=finished,
                modules={},
                extra=self.result,
                data=self.data,
            )
            self._last = self._clock()

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


class PerSampleLoop:
    """Fill ``result`` (arrays with one row per sample) from a function of one sample, resumably.

    ``checkpoint``: the file of finished rows, resumed only by a run with the same ``stage`` and
    ``key`` (``torch_state.run_key`` of everything the results depend on) and ``data`` (the
    identity of the samples' data, ``lassi.spec.contract.data_identity.data_key``; a checkpoint of other
    data is not resumed, with a note). ``certified``: whether
    a committed row ({name: value}) counts as certified, for the bar's ``certified=a/b``
    (``count_label`` names that field after what it counts, e.g. ``cs_ok`` or ``fair``).
    ``postfix``: more bar fields from the latest committed row. ``what``: the noun of the resume
    message. Result names a sample's values leave out keep the arrays' initial values there.

    Usage: ``loop = PerSampleLoop(...); loop.run(fn)``; write the output; ``loop.finish()``.
    """

    def __init__(
        self,
        result: dict[str, np.ndarray],
        checkpoint: str | Path,
        *,
        tool: str,
        stage: str,
        key: str,
        desc: str,
        what: str,
        progress: bool = True,
        certified: Callable[[Mapping[str, Any]], bool] | None = None,
        postfix: Callable[[Mapping[str, Any]], dict[str, str]] | None = None,
        data: str | None = None,
        count_label: str = "certified",
    ) -> None:
        lengths = {len(array) for array in result.values()}
        if len(lengths) != 1:
            raise ValueError(
                f"result arrays need one row per sample, got lengths {sorted(lengths)}"
            )
        self.result, self.desc, self.what, self.progress = result, desc, what, progress
        self.certified, self.postfix = certified, postfix
        self.count_label = count_label
        self.checkpoint = SampleCheckpoint(
            checkpoint, tool=tool, stage=stage, key=key, result=result, data=data
        )
        self.total = self.checkpoint.total

    @property
    def done(self) -> int:
        """Rows ``[:done]`` are final (restored or committed)."""
        return self.checkpoint.done

    def _row(self, position: int) -> dict[str, Any]:
        return {name: array[position] for name, array in self.result.items()}

    def _commit(self, position: int, values: Mapping[str, Any]) -> None:
        unknown = sorted(set(values) - set(self.result))
        if unknown:
            raise KeyError(f"sample function returned unknown result '{unknown[0]}'")
        for name, value in values.items():
            self.result[name][position] = value

    def run(self, fn: SampleFn, executor: Executor | None = None) -> dict[str, np.ndarray]:
        """Compute every unfinished sample with ``executor`` (default local) and commit in order."""
        executor = executor or LocalExecutor()
        start = self.done
        if start and self.progress:
            print(f"resuming {self.what} at sample {start}/{self.total} ({self.checkpoint.path})")
        count = (
            sum(bool(self.certified(self._row(i))) for i in range(start)) if self.certified else 0
        )
        bar = tqdm(
            total=self.total,
            initial=start,
            desc=self.desc,
            unit="sample",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        pending: dict[int, Mapping[str, Any]] = {}
        try:
            for position, values in executor.map(fn, range(start, self.total)):
                if not self.done <= position < self.total or position in pending:
                    raise RuntimeError(f"executor returned sample {position} twice or out of range")
                pending[position] = values
                while self.done in pending:
                    i = self.done
                    self._commit(i, pending.pop(i))
                    self.checkpoint.done = i + 1
                    row, fields = self._row(i), {}
                    if self.certified:
                        count += bool(self.certified(row))
                        fields[self.count_label] = f"{count}/{i + 1}"
                    if self.postfix:
                        fields.update(self.postfix(row))
                    if fields:
                        bar.set_postfix(fields, refresh=False)
                    bar.update(1)
                    self.checkpoint.step_done(i + 1)
            if self.done != self.total:
                raise RuntimeError(f"executor returned no result for sample {self.done}")
        except BaseException:
            # keep what is committed: a rerun resumes here, whatever interrupted this one
            if self.done > start:
                self.checkpoint.step_done(self.done, force=True)
            raise
        finally:
            bar.close()
        return self.result

    def finish(self) -> None:
        """The output is written: remove the checkpoint."""
        self.checkpoint.finish()
