"""What every training run shares: seeding, and one code path on a CPU, one GPU or several.

The engine is Hugging Face accelerate. Started plainly (`python -m xr train-...`) it is one process on
the GPU when there is one, else the CPU; started by `torchrun --nproc-per-node N` (or `accelerate launch`)
it is N processes under DistributedDataParallel (NCCL on GPUs, gloo on CPUs), each taking its own shard of
every epoch, the gradients averaged, and only the main process writing files. A single process runs
exactly the steps it ran before the engine existed.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs


def seed_everything(seed: int) -> random.Random:
    """Python's, NumPy's and torch's generators seeded alike; a generator of our own for data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return random.Random(seed)


def accelerator() -> Accelerator:
    """A batch may leave a branch unused (no image: the visual tokens): DDP is told to expect that."""
    return Accelerator(cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def is_main_process() -> bool:
    """Whether this process writes files and logs (the only one, or rank 0 under torchrun)."""
    return PartialState(cpu=not torch.cuda.is_available()).is_main_process


def agree(acc: Accelerator, flag: bool) -> bool:
    """True in every process when it is true in any (a time budget each process measures for itself must
    stop all of them at the same epoch)."""
    if acc.num_processes == 1:
        return flag
    return bool(acc.gather(torch.tensor([float(flag)], device=acc.device)).max().item() > 0)


def shard(order: list[int], acc: Accelerator) -> list[int]:
    """This process's part of an epoch's order. Every process gets as many examples as the others (the
    last few are left out when they do not divide), so that each takes the same number of steps:
    DistributedDataParallel waits for all at every backward pass."""
    if acc.num_processes == 1:
        return order
    usable = len(order) - len(order) % acc.num_processes
    return order[acc.process_index:usable:acc.num_processes]


def fit_logistic(linear: torch.nn.Linear, z: torch.Tensor, y: torch.Tensor, weight_decay: float, steps: int) -> None:
    """Full-batch L-BFGS on a logistic output over already standardised inputs `z`: positives weighted by
    neg/pos per output, L2 `weight_decay` per film on the weights. Deterministic, converged in seconds; the
    small heads (findings, view) are fit this way."""
    pos = y.sum(0).clamp_min(1)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=(len(y) - pos) / pos)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(linear(z).reshape(y.shape), y) + weight_decay * linear.weight.pow(2).sum() / (2 * len(y))
        loss.backward()
        return loss

    opt.step(closure)
