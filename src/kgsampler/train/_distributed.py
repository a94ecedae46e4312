r"""Data-parallel training on :mod:`torch.distributed` (see
``docs/distributed.md``).

Nothing here runs unless a process group is initialised: without one,
:func:`get_context` says :obj:`world_size=1, enabled=False` and the
:class:`~kgsampler.train.Trainer` runs exactly as before. With one (e.g.
under ``torchrun``, through :func:`init_from_env`), the Trainer

* shards every epoch's training pairs: one permutation per epoch from a
  generator seeded with (seed, epoch), identical on every rank
  (:func:`epoch_permutation`), cut into global batches of
  ``world_size x batch_size`` pairs, each split into one contiguous piece a
  rank (:func:`shard_batches`);
* averages the gradients of every optimiser step across the ranks before
  the step (:class:`GradientAverager`), the recommender's and a learnable
  sampler's alike, so that parameters stay identical on every rank;
* ranks a disjoint slice of the users in each evaluation and gathers the
  per-user metrics (:func:`gather_rows`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import Tensor

#: Multiplier that mixes a seed and an epoch into one generator seed.
_EPOCH_MIX = 1_000_003


@dataclass(frozen=True)
class DistributedContext:
    r"""Where this process stands in a process group.

    Args:
        rank (int): The process's rank in :obj:`[0, world_size)`.
        world_size (int): The number of processes.
        local_rank (int): The rank within its machine (its GPU index).
        backend (str): :obj:`"gloo"`, :obj:`"nccl"`, or :obj:`""` without a
            process group.
        enabled (bool): Whether a process group is initialised (the Trainer
            then shards its work, also with :obj:`world_size=1`).
    """
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ''
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the only one that writes files."""
        return self.rank == 0

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(rank={self.rank}, '
                f'world_size={self.world_size}, backend={self.backend!r})')


def get_context() -> DistributedContext:
    r"""The :class:`DistributedContext` of the initialised default process
    group, or the single-process one when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    return DistributedContext(
        rank=dist.get_rank(), world_size=dist.get_world_size(),
        local_rank=int(os.environ.get('LOCAL_RANK', 0)),
        backend=str(dist.get_backend()), enabled=True)


def env_world_size() -> int:
    r"""The :obj:`WORLD_SIZE` that ``torchrun`` set (1 when unset)."""
    value = os.environ.get('WORLD_SIZE', '1')
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"kgsampler-train: the environment variable "
                         f"WORLD_SIZE must be an int (got {value!r})") \
            from None


def init_from_env(device: torch.device) -> DistributedContext:
    r"""Initialises the default process group from the environment that
    ``torchrun`` sets (:obj:`RANK`, :obj:`WORLD_SIZE`, :obj:`LOCAL_RANK`,
    :obj:`MASTER_ADDR`, :obj:`MASTER_PORT`) when :obj:`WORLD_SIZE` is above
    1 and no group exists yet: backend :obj:`"nccl"` for a CUDA
    :obj:`device` (each rank then on :obj:`cuda:LOCAL_RANK`), :obj:`"gloo"`
    otherwise. Returns :func:`get_context`.

    Args:
        device (torch.device): The device the run asked for.
    """
    if env_world_size() > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("kgsampler-train: WORLD_SIZE > 1 but this "
                               "torch build has no torch.distributed")
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        if device.type == 'cuda':
            torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
        dist.init_process_group(backend=backend, init_method='env://')
    return get_context()


def epoch_permutation(num: int, seed: int, epoch: int,
                      device: torch.device) -> Tensor:
    r"""The permutation of an epoch's :obj:`num` training pairs, the same on
    every rank: drawn on the CPU from a generator seeded with
    :obj:`seed * 1_000_003 + epoch` (modulo :math:`2^{63}`).

    Shapes:
        - **output:** :math:`(num)`, :obj:`torch.long` on :obj:`device`
    """
    gen = torch.Generator().manual_seed(
        (int(seed) * _EPOCH_MIX + int(epoch)) % (2**63))
    return torch.randperm(num, generator=gen).to(device)


@dataclass
class Shard:
    r"""One rank's part of an epoch (see :func:`shard_batches`).

    Args:
        perm (Tensor): This rank's pairs, batch after batch
            :math:`(\sum_b n_b)`.
        sizes (list of int): This rank's batch sizes :math:`n_b`.
        global_sizes (list of int): The global batch sizes (all ranks).
    """
    perm: Tensor
    sizes: List[int]
    global_sizes: List[int]


def shard_batches(perm: Tensor, batch_size: int, rank: int,
                  world_size: int) -> Shard:
    r"""Cuts an epoch's permutation into global batches of
    :obj:`world_size * batch_size` consecutive pairs and gives rank
    :obj:`r` the :obj:`r`-th of the :obj:`world_size` near-equal contiguous
    pieces of each (:meth:`torch.Tensor.tensor_split`). Every pair goes to
    exactly one rank and every rank runs the same number of batches; a last
    global batch of fewer than :obj:`world_size` pairs is merged into the
    one before it (nothing is dropped or repeated).

    Args:
        perm (Tensor): The epoch's permutation :math:`(P)`.
        batch_size (int): Pairs per rank and batch.
        rank (int): This rank.
        world_size (int): The number of ranks.

    Shapes:
        - **perm:** :math:`(P)`, :math:`P \geq` :obj:`world_size`
    """
    num = perm.numel()
    if num < world_size:
        raise ValueError(f"shard_batches: {num} training pairs cannot be "
                         f"shared by world_size={world_size} ranks (got "
                         f"{num} pairs)")
    step = batch_size * world_size
    bounds = list(range(0, num, step)) + [num]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < world_size:
        del bounds[-2]
    pieces, sizes, global_sizes = [], [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        piece = perm[lo:hi].tensor_split(world_size)[rank]
        pieces.append(piece)
        sizes.append(piece.numel())
        global_sizes.append(hi - lo)
    return Shard(torch.cat(pieces), sizes, global_sizes)


def broadcast_state(module: torch.nn.Module, src: int = 0) -> None:
    r"""Copies :obj:`module`'s parameters and floating-point buffers from
    rank :obj:`src` to every rank (in place)."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point() and t.numel():
                data = t.data.contiguous()
                dist.broadcast(data, src)
                if data.data_ptr() != t.data.data_ptr():
                    t.data.copy_(data)


def broadcast_int(value: int, device: torch.device, src: int = 0) -> int:
    r"""Rank :obj:`src`'s :obj:`value` on every rank."""
    t = torch.tensor([int(value)], dtype=torch.long, device=device)
    dist.broadcast(t, src)
    return int(t.item())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    r"""Rank :obj:`src`'s picklable :obj:`obj` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def all_reduce_min_(t: Tensor) -> Tensor:
    r"""The element-wise minimum of :obj:`t` over the ranks, in place."""
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


def gather_rows(local: Tensor, sizes: List[int]) -> Tensor:
    r"""Concatenates the ranks' :obj:`local` tensors in rank order along
    their last dimension, rank :obj:`r` holding :obj:`sizes[r]` columns
    (padded for the collective, trimmed after).

    Shapes:
        - **local:** :math:`(M, n_r)`
        - **output:** :math:`(M, \sum_r n_r)`
    """
    width = max(sizes)
    pad = local.new_zeros(local.size(0), width)
    pad[:, :local.size(1)] = local
    out = [torch.empty_like(pad) for _ in sizes]
    dist.all_gather(out, pad)
    return torch.cat([o[:, :n] for o, n in zip(out, sizes)], dim=1)


def average_logs(sums: Dict[str, Any], total: int) -> Dict[str, float]:
    r"""The epoch's mean logs over every rank's pairs: :obj:`sums` holds
    each rank's per-key sums over its :obj:`total` pairs (keys missing on a
    rank count as absent there)."""
    local = {k: float(v) for k, v in sums.items()}
    everyone: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, (local, int(total)))
    keys: List[str] = []
    for s, _ in everyone:
        keys += [k for k in s if k not in keys]
    out = {}
    for k in keys:
        n = sum(t for s, t in everyone if k in s)
        out[k] = sum(s[k] for s, _ in everyone if k in s) / max(n, 1)
    return out


def _params(optimizer) -> List[Tensor]:
    seen, out = set(), []
    for group in optimizer.param_groups:
        for p in group['params']:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


class GradientAverager:
    r"""Averages the gradients of an optimiser's parameters over the ranks
    right before each of its steps (what
    :class:`~torch.nn.parallel.DistributedDataParallel` does during the
    backward pass), in one flat :func:`~torch.distributed.all_reduce`.

    Each rank's gradients are weighted by :obj:`weight` (its share of the
    global batch; :obj:`None`: :math:`1/\text{world\_size}`), so that with
    mean losses the result is the gradient of the global batch's mean. A
    parameter without a gradient on every rank stays without one; one with
    a gradient on some rank gets the weighted sum. Sparse gradients (from
    :obj:`sparse=True` embeddings) are summed densely and handed back
    sparse over the rows any rank touched.

    Args:
        optimizer: A :class:`torch.optim.Optimizer`, or any object with
            :obj:`param_groups` and :meth:`step`.
    """
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.weight: Optional[float] = None
        self.world_size = dist.get_world_size()
        if hasattr(optimizer, 'register_step_pre_hook'):
            optimizer.register_step_pre_hook(
                lambda *args, **kwargs: self.all_reduce())
        else:
            step = optimizer.step

            def synced_step(*args, **kwargs):
                self.all_reduce()
                return step(*args, **kwargs)
            optimizer.step = synced_step

    @classmethod
    def install(cls, optimizer) -> 'GradientAverager':
        r"""The averager of :obj:`optimizer`, installed once."""
        existing = getattr(optimizer, '_kgsampler_gradient_averager', None)
        if existing is not None:
            return existing
        avg = cls(optimizer)
        optimizer._kgsampler_gradient_averager = avg
        return avg

    @torch.no_grad()
    def all_reduce(self) -> None:
        r"""Replaces every gradient by the ranks' weighted sum."""
        params = _params(self.optimizer)
        if not params:
            return
        w = 1.0 / self.world_size if self.weight is None else self.weight
        dev = params[0].device
        parts, flags = [], []
        for p in params:
            g = p.grad
            rows = torch.zeros(p.size(0) if p.dim() else 1, device=dev)
            if g is None:
                dense = torch.zeros(p.numel(), device=dev)
            elif g.is_sparse:
                g = g.coalesce()
                rows[g.indices()[0]] = 1.0
                dense = g.to_dense().reshape(-1).float() * w
            else:
                dense = g.reshape(-1).float() * w
            parts += [dense, rows]
            flags += [float(g is not None), float(g is not None and
                                                  g.is_sparse)]
        flag = torch.tensor(flags, dtype=torch.float, device=dev)
        flat = torch.cat(parts + [flag])
        dist.all_reduce(flat)
        flag = flat[-flag.numel():].view(-1, 2)
        offset = 0
        for i, p in enumerate(params):
            n, nrows = p.numel(), parts[2 * i + 1].numel()
            g = flat[offset:offset + n].view_as(p).to(p.dtype)
            rows = flat[offset + n:offset + n + nrows]
            offset += n + nrows
            if flag[i, 0] == 0:
                p.grad = None
            elif flag[i, 1] > 0:
                idx = (rows > 0).nonzero().view(1, -1)
                p.grad = torch.sparse_coo_tensor(
                    idx, g[idx[0]], p.shape).coalesce()
            elif p.grad is None or p.grad.is_sparse:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'{type(self.optimizer).__name__}, '
                f'world_size={self.world_size})')
