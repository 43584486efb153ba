"""Training across processes: ``edgerf train`` under ``torchrun`` (torch.distributed).

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with them the trainer joins
the process group (gloo on CPU, nccl on CUDA) and wraps the model in
DistributedDataParallel, which all-reduces (averages) gradients during backward. Each
rank owns a share of the parallel unreset training streams (lanes) and carries their
state itself: a stream's state never crosses ranks, only gradients do. Rank 0 alone
writes checkpoints and logs and runs the evaluation. Without torchrun this is one
process and nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from edgerf.choices import TRAIN_DEVICES



@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None        # None: a single process, no process group
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def lanes(self, batch: int) -> range:
        """The global lane indices this rank owns (lanes are dealt round-robin)."""
        return range(self.rank, batch, self.world)

    def sum(self, *values: float) -> list[float]:
        """Sum scalars over ranks (epoch statistics; not on the per-chunk path)."""
        if self.backend is None:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def min_int(self, value: int) -> int:
        if self.backend is None:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return int(t.item())

    def barrier(self) -> None:
        if self.backend is not None:
            torch.distributed.barrier()

    def provenance(self) -> dict:
        return {"world_size": self.world, "backend": self.backend or "none", "device": self.device}


def resolve_device(device: str) -> str:
    if device not in TRAIN_DEVICES:
        raise ValueError(f"--device must be one of {', '.join(TRAIN_DEVICES)}, not {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device here; use --device cpu or auto")
    return device


def setup(device: str = "auto") -> Dist:
    """Join the torchrun process group if there is one; pick the device."""
    device = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)
    return Dist(rank=rank, world=world, local_rank=local, backend=backend, device=device)


def teardown(dist: Dist) -> None:
    """Close the process group once every rank is done with it: rank 0 evaluates long after
    the others finish training, and a rank that closes its gloo connections while a peer
    still holds the group can abort (seen once under load: SIGABRT in rank 1)."""
    if dist.backend is not None and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
