"""The recommender's optimiser: Adam, or SparseAdam for sparse embeddings."""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Tuple

import torch
from torch import Tensor

#: The values of :obj:`Trainer(optimizer=...)`.
OPTIMIZERS = ('auto', 'adam', 'sparse_adam')


def sparse_parameters(model: torch.nn.Module) -> List[Tensor]:
    r"""The parameters of :obj:`model` that receive sparse gradients: the
    weights of its :class:`torch.nn.Embedding` and
    :class:`torch.nn.EmbeddingBag` modules built with :obj:`sparse=True`."""
    out, seen = [], set()
    for m in model.modules():
        if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and \
                m.sparse and m.weight.requires_grad and \
                id(m.weight) not in seen:
            seen.add(id(m.weight))
            out.append(m.weight)
    return out


class SparseDenseAdam:
    r"""One optimiser over two parameter sets: the sparse-gradient embedding
    tables (:class:`torch.optim.SparseAdam`, which updates only the rows a
    batch touches and leaves the moments of the other rows as they are: a
    *lazy* Adam) and every other parameter (:class:`torch.optim.Adam`).

    It offers what the training loop uses of an optimiser:
    :meth:`zero_grad`, :meth:`step`, :meth:`state_dict`,
    :meth:`load_state_dict` and :obj:`param_groups`.

    Args:
        sparse (iterable of torch.Tensor): Parameters with sparse gradients.
        dense (iterable of torch.Tensor): The other parameters (may be
            empty).
        lr (float, optional): Learning rate of both. (default: :obj:`1e-3`)
        betas (tuple of float, optional): Adam's moment decays.
            (default: :obj:`(0.9, 0.999)`)
        eps (float, optional): Adam's :math:`\epsilon`.
            (default: :obj:`1e-8`)
    """
    def __init__(self, sparse: Iterable[Tensor], dense: Iterable[Tensor],
                 lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        sparse, dense = list(sparse), list(dense)
        if not sparse:
            raise ValueError("SparseDenseAdam: 'sparse' must hold at least "
                             "one parameter (got none)")
        self.sparse = torch.optim.SparseAdam(sparse, lr=lr, betas=betas,
                                             eps=eps)
        self.dense = (torch.optim.Adam(dense, lr=lr, betas=betas, eps=eps)
                      if dense else None)

    @property
    def optimizers(self) -> List[torch.optim.Optimizer]:
        return [self.sparse] + ([self.dense] if self.dense is not None
                                else [])

    @property
    def param_groups(self) -> List[Dict[str, Any]]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> Dict[str, Any]:
        return {'sparse': self.sparse.state_dict(),
                'dense': (self.dense.state_dict()
                          if self.dense is not None else None)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != {'sparse', 'dense'}:
            got = sorted(state) if isinstance(state, dict) else \
                type(state).__name__
            raise ValueError(f"SparseDenseAdam: the state must come from a "
                             f"SparseDenseAdam, with keys ['dense', "
                             f"'sparse'] (got {got})")
        if (state['dense'] is None) != (self.dense is None):
            raise ValueError("SparseDenseAdam: the state was saved with "
                             "another split of sparse and dense parameters "
                             f"(got dense state {state['dense'] is not None}"
                             f", this optimiser has dense parameters "
                             f"{self.dense is not None})")
        self.sparse.load_state_dict(state['sparse'])
        if self.dense is not None:
            self.dense.load_state_dict(state['dense'])

    def __repr__(self) -> str:
        n_dense = 0 if self.dense is None else sum(
            len(g['params']) for g in self.dense.param_groups)
        n_sparse = sum(len(g['params']) for g in self.sparse.param_groups)
        return (f'{self.__class__.__name__}(sparse={n_sparse}, '
                f'dense={n_dense}, lr={self.sparse.defaults["lr"]})')


def build_optimizer(model: torch.nn.Module, optimizer: str = 'auto',
                    lr: float = 1e-3, weight_decay: float = 0.0):
    r"""The recommender's optimiser.

    Args:
        model (torch.nn.Module): The recommender.
        optimizer (str, optional): :obj:`"adam"`: :class:`torch.optim.Adam`
            over every parameter (the model must have no sparse-gradient
            embedding); :obj:`"sparse_adam"`: :class:`SparseDenseAdam`,
            :class:`torch.optim.SparseAdam` on the embeddings built with
            :obj:`sparse=True` (the model must have some) and Adam on the
            rest; :obj:`"auto"`: :obj:`"sparse_adam"` when the model has
            sparse-gradient embeddings, :obj:`"adam"` otherwise.
            (default: :obj:`"auto"`)
        lr (float, optional): Learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): Adam's L2 weight decay; must be 0
            with sparse parameters (SparseAdam has none; a recommender's own
            :obj:`reg` penalises the batch's rows instead).
            (default: :obj:`0.0`)
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Trainer: 'optimizer' must be one of {OPTIMIZERS} "
                         f"(got {optimizer!r})")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or \
            not math.isfinite(lr) or not lr > 0:
        raise ValueError(f"Trainer: 'lr' must be a positive number "
                         f"(got {lr!r})")
    sparse = sparse_parameters(model)
    if optimizer == 'adam' and sparse:
        raise ValueError(f"Trainer: optimizer='adam' cannot update the "
                         f"{len(sparse)} sparse-gradient embedding(s) of "
                         f"{type(model).__name__} (built with sparse=True); "
                         f"use optimizer='sparse_adam' or 'auto', or build "
                         f"the model with sparse=False (got "
                         f"optimizer={optimizer!r})")
    if optimizer == 'sparse_adam' and not sparse:
        raise ValueError(f"Trainer: optimizer='sparse_adam' needs a model "
                         f"with sparse-gradient embeddings (e.g. "
                         f"MF(..., sparse=True)); {type(model).__name__} "
                         f"has none (got optimizer={optimizer!r})")
    if not sparse:
        return torch.optim.Adam(model.parameters(), lr=lr,
                                weight_decay=weight_decay)
    if weight_decay > 0:
        raise ValueError(f"Trainer: 'weight_decay' must be 0 with sparse "
                         f"embeddings (SparseAdam has no weight decay; the "
                         f"recommender's 'reg' penalises the batch's rows) "
                         f"(got weight_decay={weight_decay!r})")
    ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters()
             if p.requires_grad and id(p) not in ids]
    return SparseDenseAdam(sparse, dense, lr=lr)
