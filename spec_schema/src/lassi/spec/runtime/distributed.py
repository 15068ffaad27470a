"""Data-parallel training under ``torchrun`` (one process per device, gradients averaged).

``torchrun --nproc-per-node N <console script> <train command> ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` :func:`data_parallel` joins the process
group (gloo on the CPU, nccl on CUDA, where rank r uses ``cuda:LOCAL_RANK``). Without it (or with
one process) nothing is initialised and a run is exactly the single-process run.

The contract that makes N processes reproduce one: every rank draws the same global batch from
the same seeded stream and takes its contiguous slice (:meth:`Ranks.shard`); each rank's loss is
its slice's share of the global loss scaled by N (:meth:`Ranks.share`), and the gradients are
summed and divided by N after backward (:meth:`Ranks.average_gradients`), so every rank applies
the gradient of the global-batch loss. Terms that couple the samples of a batch are computed on
the global batch through differentiable collectives: BatchNorm statistics are **synced** over
the ranks (:func:`sync_batch_norm`; torch's ``SyncBatchNorm`` runs on CUDA only) and batch-pair
terms see all rows (:meth:`Ranks.gather_rows`). Results then differ from one process only by
float summation order. Rank 0 alone writes artifacts and checkpoints and shows progress.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lassi.spec.contract.errors import UsageError

if TYPE_CHECKING:
    import torch


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when launched by torchrun with more than one process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError(None, "WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise UsageError(None, f"RANK {rank} is outside 0..{world - 1} (WORLD_SIZE {world})")
    return rank, world, local_rank


def is_main() -> bool:
    """True on rank 0 of a torchrun job, and always in a single-process run."""
    env = torchrun_env()
    return env is None or env[0] == 0


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job; ``world == 1`` means a plain single-process run."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_batch_size(self, batch_size: int, option: str = "--batch-size") -> None:
        """The global batch must split into equal slices, one per process."""
        if batch_size % self.world:
            raise UsageError(
                None,
                f"{option} {batch_size} (the global batch) is not divisible by the "
                f"{self.world} torchrun processes",
            )

    def shard(self, n: int) -> slice:
        """This rank's contiguous rows of a global batch of n (sizes differ by at most one)."""
        return slice(n * self.rank // self.world, n * (self.rank + 1) // self.world)

    def share(self, n: int) -> float:
        """Weight of a loss averaged over this rank's rows of a global batch of n: N n_r / n, so
        that averaging the ranks' gradients gives the gradient of the global-batch mean."""
        rows = self.shard(n)
        return self.world * (rows.stop - rows.start) / n

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. fills a cache), the others after it finished."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def main_text(self, text: str) -> str:
        """Rank 0's ``text`` on every rank (ASCII of one length on every rank, e.g. a hex digest):
        a value each rank computes but all must share, such as a cache key."""
        if not self.active:
            return text
        import torch
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        codes = torch.tensor(list(text.encode("ascii")), dtype=torch.int64, device=device)
        dist.broadcast(codes, 0)
        return bytes(codes.cpu().tolist()).decode("ascii")

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the ranks (not differentiable; a copy when inactive)."""
        tensor = tensor.clone()
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, module: Any) -> None:
        """Make every rank's parameters and buffers rank 0's."""
        if self.active:
            import torch.distributed as dist

            for tensor in module.state_dict().values():
                dist.broadcast(tensor, 0)

    def average_gradients(self, params: Iterable[torch.Tensor]) -> None:
        """After backward: every gradient becomes the mean of the ranks' gradients (one
        all-reduce of the flattened gradients)."""
        if not self.active:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def gather_rows(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """The global batch [n, ...] from every rank's slice, differentiably: the gradient of
        row i flows back to the rank that holds it (summed over the ranks that used it)."""
        if not self.active:
            return local
        from torch.distributed.nn.functional import all_reduce

        rows = self.shard(n)
        full = local.new_zeros((n, *local.shape[1:]))
        full = full.index_copy(0, _arange(rows, local.device), local)
        return all_reduce(full)


def _arange(rows: slice, device: Any) -> torch.Tensor:
    import torch

    return torch.arange(rows.start, rows.stop, device=device)


@contextmanager
def data_parallel(device: str | torch.device = "cpu") -> Iterator[tuple[Ranks, torch.device]]:
    """(ranks, the device this process trains on) for the duration of a training run.

    Under torchrun: joins the process group (gloo for CPU, nccl for CUDA; a CUDA device becomes
    ``cuda:LOCAL_RANK``) and leaves it at the end. A process group that already exists is used
    and left alone. Otherwise: ``Ranks()`` and ``device`` unchanged, nothing initialised.
    """
    import torch
    import torch.distributed as dist

    device = torch.device(device)
    env = torchrun_env()
    if env is None:
        yield Ranks(), device
        return
    rank, world, local_rank = env
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(
                None, f"LOCAL_RANK {local_rank} has no CUDA device ({torch.cuda.device_count()})"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            **({"device_id": device} if device.type == "cuda" else {}),
        )
    try:
        yield Ranks(rank=dist.get_rank(), world=dist.get_world_size()), device
    finally:
        if owned:
            dist.destroy_process_group()


class _GlobalBatchNorm:
    """BatchNorm whose training-mode statistics are those of the global batch (all ranks).

    Mean and biased variance (two passes) come from all-reduced sums over the batch and spatial
    dimensions; autograd flows through the collectives, so the gradient is that of one BatchNorm
    over the whole global batch; running statistics get the same update as single-process
    BatchNorm (unbiased variance, ``momentum``). Eval mode, and any run without a process group,
    is the plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.distributed as dist

        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)  # type: ignore[misc]
        from torch.distributed.nn.functional import all_reduce

        self._check_input_dim(x)  # type: ignore[attr-defined]
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_tensor([x.numel() / max(x.shape[1], 1)])
        totals = all_reduce(torch.cat([x.sum(dims), count]))
        n = totals[-1].detach()
        mean = totals[:-1] / n
        centred = x - mean.reshape(shape)
        var = all_reduce((centred * centred).sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)  # type: ignore[attr-defined]
        if self.affine:  # type: ignore[attr-defined]
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)  # type: ignore[attr-defined]
        if self.track_running_stats:  # type: ignore[attr-defined]
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[attr-defined]
                momentum = self.momentum  # type: ignore[attr-defined]
                if momentum is None:
                    momentum = 1.0 / float(self.num_batches_tracked)  # type: ignore[attr-defined]
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)  # type: ignore[attr-defined]
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)  # type: ignore[attr-defined]
        return out


_GLOBAL_CLASSES: dict[type, type] = {}


def sync_batch_norm(module: Any) -> None:
    """Make every BatchNorm in ``module`` use global-batch statistics while training under
    torchrun (in place: same class hierarchy, parameters, buffers and state-dict names)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    for child in module.modules():
        cls = type(child)
        if isinstance(child, _BatchNorm) and not isinstance(child, _GlobalBatchNorm):
            if cls not in _GLOBAL_CLASSES:
                _GLOBAL_CLASSES[cls] = type(f"Global{cls.__name__}", (_GlobalBatchNorm, cls), {})
            child.__class__ = _GLOBAL_CLASSES[cls]
