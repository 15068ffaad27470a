"""The resumable per-sample loop (lassi.spec.runtime.per_sample): resume, in-order commits, progress bar."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lassi.spec import Checkpoint, read_artifact
from lassi.spec.runtime.per_sample import LocalExecutor, PerSampleLoop, SampleFn

N = 23


def sample(position: int) -> dict[str, Any]:
    """A deterministic function of one sample, as certification is with per-sample seeds."""
    rng = np.random.default_rng([7, position])
    z = rng.normal(size=3).astype(np.float32)
    return {"z": z, "r": float(np.abs(z).sum()), "status": int(z[0] > 0)}


def empty() -> dict[str, np.ndarray]:
    return {
        "z": np.zeros((N, 3), np.float32),
        "r": np.zeros(N, np.float32),
        "status": np.zeros(N, np.uint8),
    }


def make_loop(
    path: Path, result: dict[str, np.ndarray], key: str = "k", progress: bool = False
) -> PerSampleLoop:
    return PerSampleLoop(
        result,
        path,
        tool="test",
        stage="unit",
        key=key,
        desc="unit loop",
        what="the unit loop",
        progress=progress,
        certified=lambda row: row["status"] == 1,
        postfix=lambda row: {"r": f"{row['r']:.2f}"},
    )


class Failing:
    """``sample`` that raises at one position; records the positions it computed."""

    def __init__(self, fail_at: int | None) -> None:
        self.fail_at, self.calls = fail_at, []

    def __call__(self, position: int) -> dict[str, Any]:
        if position == self.fail_at:
            raise RuntimeError("interrupted")
        self.calls.append(position)
        return sample(position)


class BlockReversed:
    """An executor that computes blocks of positions and returns each block last to first."""

    def __init__(self, block: int, stop_after: int | None = None) -> None:
        self.block, self.stop_after = block, stop_after

    def map(
        self, fn: SampleFn, positions: Sequence[int]
    ) -> Iterator[tuple[int, Mapping[str, Any]]]:
        positions, given = list(positions), 0
        for start in range(0, len(positions), self.block):
            for position in reversed(positions[start : start + self.block]):
                if given == self.stop_after:
                    raise KeyboardInterrupt
                given += 1
                yield position, fn(position)


@pytest.fixture()
def reference(tmp_path: Path) -> dict[str, np.ndarray]:
    loop = make_loop(tmp_path / "reference.ckpt", empty())
    result = loop.run(sample)
    loop.finish()
    return result


@pytest.fixture(autouse=True)
def rare_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the save on interruption writes a checkpoint in these tests."""
    monkeypatch.setenv("LASSI_CHECKPOINT_SECONDS", "3600")


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_after_an_exception_gives_the_uninterrupted_arrays(
    tmp_path: Path, reference: dict[str, np.ndarray]
) -> None:
    path = tmp_path / "run.ckpt"
    first = Failing(fail_at=9)
    with pytest.raises(RuntimeError, match="interrupted"):
        make_loop(path, empty()).run(first)
    assert first.calls == list(range(9))
    assert read_artifact(path, expect=Checkpoint).meta.step == 9

    second = Failing(fail_at=None)
    loop = make_loop(path, empty())
    assert loop.done == 9
    result = loop.run(second)
    assert second.calls == list(range(9, N)), "finished samples are kept, not recomputed"
    assert_same(result, reference)
    assert path.exists()
    loop.finish()
    assert not path.exists()


def test_another_run_key_starts_from_scratch(tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt"
    with pytest.raises(RuntimeError):
        make_loop(path, empty()).run(Failing(fail_at=5))
    assert make_loop(path, empty(), key="other").done == 0
    assert make_loop(path, empty()).done == 5


def test_out_of_order_executor_commits_in_order(
    tmp_path: Path, reference: dict[str, np.ndarray]
) -> None:
    path = tmp_path / "run.ckpt"
    # blocks of 5 returned 4,3,2,1,0,9,8,...: interrupted after 8 results, only 0..4 are committed
    with pytest.raises(KeyboardInterrupt):
        make_loop(path, empty()).run(sample, BlockReversed(5, stop_after=8))
    assert read_artifact(path, expect=Checkpoint).meta.step == 5
    loop = make_loop(path, empty())
    assert loop.done == 5
    assert_same(loop.run(sample, BlockReversed(5)), reference)
    assert_same(make_loop(tmp_path / "local.ckpt", empty()).run(sample, LocalExecutor()), reference)


def test_executor_must_return_every_sample_once(tmp_path: Path) -> None:
    class Twice:
        def map(
            self, fn: SampleFn, positions: Sequence[int]
        ) -> Iterator[tuple[int, Mapping[str, Any]]]:
            for position in positions:
                yield position, fn(position)
                yield position, fn(position)

    class Skips:
        def map(
            self, fn: SampleFn, positions: Sequence[int]
        ) -> Iterator[tuple[int, Mapping[str, Any]]]:
            for position in list(positions)[1:]:
                yield position, fn(position)

    with pytest.raises(RuntimeError, match="sample 0 twice"):
        make_loop(tmp_path / "a.ckpt", empty()).run(sample, Twice())
    with pytest.raises(RuntimeError, match="no result for sample 0"):
        make_loop(tmp_path / "b.ckpt", empty()).run(sample, Skips())


def test_unknown_result_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown result 'extra'"):
        make_loop(tmp_path / "a.ckpt", empty()).run(lambda i: {"extra": 1.0})


def test_progress_bar_and_resume_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.ckpt"
    with pytest.raises(RuntimeError):
        make_loop(path, empty(), progress=False).run(Failing(fail_at=4))
    make_loop(path, empty(), progress=False).run(sample)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""

    with pytest.raises(RuntimeError):
        make_loop(path, empty(), progress=True).run(Failing(fail_at=11))
    make_loop(path, empty(), progress=True).run(sample)
    shown = capsys.readouterr()
    assert f"resuming the unit loop at sample 11/{N} ({path})" in shown.out
    certified = sum(sample(i)["status"] for i in range(N))
    assert "unit loop" in shown.err and f"certified={certified}/{N}" in shown.err
