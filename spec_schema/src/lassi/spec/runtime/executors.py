"""Where a per-sample loop runs: in this process, or sharded over the actors of a Ray cluster.

Both implement :class:`lassi.spec.runtime.per_sample.Executor`. With per-sample seeds
(:mod:`lassi.spec.runtime.seeding`) a sample's certificate depends only on the sample, so the executor
changes where and how fast it is computed, never what: :class:`PerSampleLoop` commits the results
in sample order through its checkpoint, whichever executor delivered them.

:class:`RayExecutor` (optional extra ``[ray]``): the sample function, with the models it closes
over, is put into Ray's object store once and each actor deserialises it once (the model is loaded
once per actor, not per sample). Positions go out in small batches, at most two in flight per
actor, in position order, so the loop can commit (and checkpoint) a growing prefix while the
cluster works. An actor that dies is restarted by Ray and its unfinished batches retried
(``max_restarts``, ``max_task_retries``). Ray moves the function and the results between this
program's own processes with its own serialiser; no file from another party is ever unpickled.

Connecting never hangs: a ``--ray-address`` is first probed with plain sockets (the name must
resolve, the port must accept a connection and answer as a gRPC (HTTP/2) server, as Ray's GCS
and client server do, all within ``CONNECT_TIMEOUT`` seconds), and any failure to reach or to
start Ray is one line, exit 2. Ray's own log lines stay out of the user's terminal unless
``verbose`` (``--ray-verbose``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from lassi.spec.contract.errors import UsageError
from lassi.spec.runtime.per_sample import Executor, LocalExecutor, SampleFn

EXECUTORS = ("local", "ray")
RAY_EXTRA = "Ray is not installed: install the optional extra, e.g. pip install './producer[ray]'"
CONNECT_TIMEOUT = 10.0  # seconds for the whole probe of a --ray-address
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _split_address(address: str) -> tuple[str, int]:
    """``[ray://]host:port`` -> (host, port); a one-line UsageError for anything else."""
    text = address.strip()
    if text.startswith("ray://"):
        text = text[len("ray://") :]
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(
            None, f"--ray-address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}"
        )
    return host, int(port_text)


def probe_ray_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse (exit 2, one line) an address where no Ray cluster can answer, within ``timeout``
    seconds: the name must resolve, the port accept a TCP connection, and the server answer the
    HTTP/2 connection preface with a SETTINGS frame (Ray's GCS and client server speak gRPC; with
    ``RAY_USE_TLS`` only the connection is checked)."""
    if address.strip().lower() in ("auto", "local"):
        return
    host, port = _split_address(address)
    where = f"cannot reach Ray at {address}"
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        raise UsageError(None, f"{where}: the host name {host!r} does not resolve") from None
    except TimeoutError:
        raise UsageError(None, f"{where}: no answer within {timeout:g} s") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(None, f"{where}: {reason} (is 'ray start --head' running there?)") from None
    with sock:
        if os.environ.get("RAY_USE_TLS", "0") not in ("", "0"):
            return
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            sock.sendall(_HTTP2_PREFACE)
            frame = b""
            while len(frame) < 9:
                piece = sock.recv(9 - len(frame))
                if not piece:
                    break
                frame += piece
        except OSError:
            frame = b""
        if len(frame) < 9 or frame[3] != 0x04:  # an HTTP/2 SETTINGS frame
            raise UsageError(
                None,
                f"{where}: the server on port {port} does not answer as a Ray cluster (gRPC) "
                f"within {timeout:g} s",
            )


@contextlib.contextmanager
def _ray_quiet(verbose: bool) -> Iterator[None]:
    """Ray's log lines (Python logger and the core's own lines on stderr) hidden unless
    ``verbose``; our own one-line error is what the user reads."""
    if verbose:
        yield
        return
    logger = logging.getLogger("ray")
    level = logger.level
    logger.setLevel(logging.ERROR)
    saved = None
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        logger.setLevel(level)


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
        verbose: bool = False,
    ) -> None:
        if workers < 1 or threads < 0 or batch < 1:
            raise UsageError(None, "--workers and the batch size must be at least 1")
        if address is None and workers > max_workers():
            raise UsageError(
                None,
                f"--workers {workers} is more than a local Ray node can run here (at most "
                f"{max_workers()}, 4 per CPU core); give --ray-address for a larger cluster",
            )
        self.workers, self.address, self.threads = workers, address, threads
        self.num_gpus, self.batch, self.max_restarts = num_gpus, batch, max_restarts
        self.verbose = verbose
        self.actors: list[Any] = []
        self._started = False

    def __enter__(self) -> RayExecutor:
        ray = import_ray()
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")  # ray.init reads it too
            if address:
                probe_ray_address(address)
            where = f"reach Ray at {self.address}" if self.address else "start a local Ray node"
            try:
                with _ray_quiet(self.verbose):
                    ray.init(
                        address=self.address,
                        num_cpus=None if self.address else self.workers * max(1, self.threads),
                        include_dashboard=False,
                        log_to_driver=self.verbose,
                        logging_level=logging.INFO if self.verbose else logging.ERROR,
                    )
            except Exception as error:  # Ray raises many kinds; each means no cluster to use
                with contextlib.suppress(Exception):
                    ray.shutdown()
                lines = str(error).strip().splitlines() or [type(error).__name__]
                raise UsageError(
                    None, f"cannot {where}: {lines[0][:200]} (--ray-verbose shows Ray's log)"
                ) from None
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


def max_workers() -> int:
    """The most actors a local Ray node gets: 4 per CPU core (as ``--threads``)."""
    from lassi.spec.runtime.cli import max_threads

    return max_threads()


def make_executor(
    name: str,
    *,
    workers: int = 2,
    address: str | None = None,
    threads: int = 1,
    verbose: bool = False,
) -> Executor:
    """``--executor local|ray`` (with ``--workers``, ``--ray-address``) as an executor."""
    if name == "local":
        if address:
            raise UsageError(None, "--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        import_ray()
        return RayExecutor(workers, address=address, threads=threads, verbose=verbose)
    raise UsageError(None, f"unknown executor '{name}' ({', '.join(EXECUTORS)})")
