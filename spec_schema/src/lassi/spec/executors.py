"""Where a per-sample loop runs: in this process, or sharded over the actors of a Ray cluster.

Both implement :class:`lassi.spec.per_sample.Executor`. With per-sample seeds
(:mod:`lassi.spec.seeding`) a sample's certificate depends only on the sample, so the executor
changes where and how fast it is computed, never what: :class:`PerSampleLoop` commits the results
in sample order through its checkpoint, whichever executor delivered them.

:class:`RayExecutor` (optional extra ``[ray]``): the sample function, with the models it closes
over, is put into Ray's object store once and each actor deserialises it once (the model is loaded
once per actor, not per sample). Positions go out in small batches, at most two in flight per
actor, in position order, so the loop can commit (and checkpoint) a growing prefix while the
cluster works. An actor that dies is restarted by Ray and its unfinished batches retried
(``max_restarts``, ``max_task_retries``). Ray moves the function and the results between this
program's own processes with its own serialiser; no file from another party is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from lassi.spec.errors import UsageError
from lassi.spec.per_sample import Executor, LocalExecutor, SampleFn

EXECUTORS = ("local", "ray")
RAY_EXTRA = "Ray is not installed: install the optional extra, e.g. pip install './producer[ray]'"


class _SampleWorker:
    """One Ray actor: holds the sample function, computes batches of positions."""

    def __init__(self, fn: SampleFn, threads: int) -> None:
        if threads:
            try:
                import torch
            except ImportError:  # a torch-free sample function (onnxruntime only)
                pass
            else:
                torch.set_num_threads(threads)
        self.fn = fn

    def run(self, positions: list[int]) -> list[tuple[int, Mapping[str, Any]]]:
        return [(position, self.fn(position)) for position in positions]


class RayExecutor:
    """Shard a per-sample loop over ``workers`` Ray actors (``threads`` torch threads each).

    ``address``: a running cluster (``ray start --head`` prints it); None starts a local one for
    this process (or joins the one already started, as a test session does). ``num_gpus``: GPUs
    per actor when the sample function runs on CUDA. Use as a context manager; the actors are
    removed on exit, and a cluster this executor started is shut down.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        address: str | None = None,
        threads: int = 1,
        num_gpus: float = 0.0,
        batch: int = 1,
        max_restarts: int = 3,
    ) -> None:
        if workers < 1 or threads < 0 or batch < 1:
            raise UsageError(None, "--workers and the batch size must be at least 1")
        self.workers, self.address, self.threads = workers, address, threads
        self.num_gpus, self.batch, self.max_restarts = num_gpus, batch, max_restarts
        self.actors: list[Any] = []
        self._started = False

    def __enter__(self) -> RayExecutor:
        ray = import_ray()
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address,
                    num_cpus=None if self.address else self.workers * max(1, self.threads),
                    include_dashboard=False,
                    log_to_driver=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = self.address or "a local cluster"
                raise UsageError(None, f"cannot start or reach Ray at {where}: {error}") from None
            self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        ray = import_ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started:
            ray.shutdown()
            self._started = False

    def map(self, fn: SampleFn, positions: Sequence[int]) -> Iterator[tuple[int, Mapping[str, Any]]]:
        ray = import_ray()
        if not ray.is_initialized():
            raise RuntimeError("RayExecutor.map needs the executor's context (with RayExecutor())")
        positions = list(positions)
        if not positions:
            return
        fn_ref = ray.put(fn)
        actor_class = ray.remote(_SampleWorker).options(
            num_cpus=max(1, self.threads),
            num_gpus=self.num_gpus,
            max_restarts=self.max_restarts,
            max_task_retries=self.max_restarts,
        )
        count = min(self.workers, -(-len(positions) // self.batch))
        self.actors = [actor_class.remote(fn_ref, self.threads) for _ in range(count)]
        batches = [positions[i : i + self.batch] for i in range(0, len(positions), self.batch)]
        next_batch, in_flight = 0, {}  # ref -> actor
        load = {index: 0 for index in range(count)}
        while next_batch < len(batches) or in_flight:
            for index, actor in enumerate(self.actors):  # top every actor up to two batches
                while load[index] < 2 and next_batch < len(batches):
                    in_flight[actor.run.remote(batches[next_batch])] = index
                    load[index] += 1
                    next_batch += 1
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                load[in_flight.pop(ref)] -= 1
                yield from ray.get(ref)


def import_ray() -> Any:
    """The ``ray`` module, or a usage error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UsageError(None, RAY_EXTRA) from None
    return ray


def make_executor(
    name: str, *, workers: int = 2, address: str | None = None, threads: int = 1
) -> Executor:
    """``--executor local|ray`` (with ``--workers``, ``--ray-address``) as an executor."""
    if name == "local":
        if address:
            raise UsageError(None, "--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        import_ray()
        return RayExecutor(workers, address=address, threads=threads)
    raise UsageError(None, f"unknown executor '{name}' ({', '.join(EXECUTORS)})")
