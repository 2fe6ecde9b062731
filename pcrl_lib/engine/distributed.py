"""Process-group set-up for ``torchrun`` (single node or multi-node).

    torchrun --nproc_per_node=4 my_script.py               # one node, 4 GPUs
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=4 my_script.py

``init_from_env()`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and starts the process group: NCCL on
GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init_from_env(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Start the process group from torchrun's variables; returns ``(rank, world, device)``.

    Without those variables it does nothing and returns ``(0, 1, device)``.
    """
    use_cuda = torch.cuda.is_available()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if use_cuda else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    return dist.get_rank(), dist.get_world_size(), device


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Convert every batch norm to ``nn.SyncBatchNorm`` (statistics over all processes;
    needs GPUs)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)
