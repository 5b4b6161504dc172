"""Data-parallel helpers: `torchrun --nproc_per_node N train_sae.py ...` (WORLD_SIZE > 1) trains with
DDP over gloo (CPU) or nccl (CUDA). Every helper is a no-op in a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment (1 process when unset)."""
    return DistInfo(
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1. On CUDA each rank takes GPU
    `LOCAL_RANK` (offset by the requested device index); returns (info, the device this rank uses)."""
    info = env_info()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", (device.index or 0) + info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return info, device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (returns the tensor)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate equally shaped tensors of every rank along dim 0, in rank order."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(batch: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous share of a global batch (rows `rank·b … (rank+1)·b - 1`, b = B / world)."""
    if not info.enabled:
        return batch
    if len(batch) % info.world_size:
        raise ValueError(
            f"The global batch of {len(batch)} sequences does not split over {info.world_size} ranks: "
            f"make --batch_size (sequences per step, all ranks together) a multiple of {info.world_size}."
        )
    per_rank = len(batch) // info.world_size
    return batch[info.rank * per_rank : (info.rank + 1) * per_rank]


def global_total_variance(x: torch.Tensor) -> torch.Tensor:
    """Σ‖x − μ‖² over the tokens of every rank, μ the mean over all of them (x: this rank's [N, d])."""
    flat = x.reshape(-1, x.shape[-1]).float()
    stats = torch.cat([flat.sum(0), flat.new_tensor([flat.shape[0]])]).double()
    all_reduce_sum(stats)
    mean = (stats[:-1] / stats[-1]).to(flat.dtype)
    return all_reduce_sum((flat - mean).pow(2).sum())
