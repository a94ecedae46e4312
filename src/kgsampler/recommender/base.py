"""What the trainer needs from a recommender."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

#: Entries (user x item x width) of one chunk of a full ranking: bounds the
#: temporaries of :meth:`Recommender.full_scores` and of the models' own.
FULL_SCORES_CHUNK = 1 << 22


def bpr_l2(u: Tensor, p: Tensor, n: Tensor, u0: Tensor, p0: Tensor,
           n0: Tensor, reg: float) -> Tensor:
    r"""The BPR loss of MF and LightGCN: mean over the :math:`B N`
    (user, positive, negative) triples of :math:`-\ln\sigma(\mathbf{u}^{\top}
    \mathbf{p} - \mathbf{u}^{\top}\mathbf{n})`, plus :obj:`reg` times the
    batch's L2 penalty :math:`\frac{1}{B}\sum (\|\mathbf{u}_0\|^2 +
    \|\mathbf{p}_0\|^2 + \frac{1}{N}\sum_j \|\mathbf{n}_{0j}\|^2) / 2` on the
    embeddings :obj:`u0, p0, n0` (the scored ones for MF, layer 0 for
    LightGCN).

    Shapes: **u, p, u0, p0** :math:`(B, d)`, **n, n0** :math:`(B, N, d)`,
    output :math:`()`."""
    pos = (u * p).sum(-1, keepdim=True)  # [B, 1]
    neg = (n @ u.unsqueeze(-1)).squeeze(-1)  # [B, N]
    bpr = -F.logsigmoid(pos - neg).mean()
    if reg == 0:
        return bpr
    l2 = (u0.pow(2).sum(-1) + p0.pow(2).sum(-1) +
          n0.pow(2).sum(-1).mean(-1)).mean() / 2
    return bpr + reg * l2


@dataclass
class LayerEmbeddings:
    r"""Per-layer embeddings of a layered (GNN) recommender, what its
    optional :meth:`layer_embeddings` capability returns: layer 0 is the
    ego (input) embedding, layer :math:`l` the output of the :math:`l`-th
    propagation, and the recommender's representation of a node is the
    weighted sum :math:`\mathbf{e} = \sum_l w_l \mathbf{e}^{(l)}`
    (:meth:`pool`; LightGCN: :math:`w_l = \alpha_l`, the mean by default).

    Args:
        user (torch.Tensor): Every user's per-layer embeddings.
        item (torch.Tensor): Every item's per-layer embeddings.
        weight (torch.Tensor): Layer weights :math:`w_l` of the pooling.

    Shapes:
        - **user:** :math:`(U, L + 1, D)`
        - **item:** :math:`(I, L + 1, D)`
        - **weight:** :math:`(L + 1)`
    """
    user: Tensor
    item: Tensor
    weight: Tensor

    @property
    def num_layers(self) -> int:
        r"""The number of propagation layers :math:`L`."""
        return self.weight.numel() - 1

    def pool(self, x: Tensor) -> Tensor:
        r"""The recommender's pooling of per-layer embeddings,
        :math:`\sum_l w_l \mathbf{x}^{(l)}`.

        Args:
            x (torch.Tensor): Per-layer embeddings.

        Shapes:
            - **x:** :math:`(*, L + 1, D)`
            - **output:** :math:`(*, D)`
        """
        return (x * self.weight.to(x.dtype).unsqueeze(-1)).sum(-2)

    def score(self, users: Tensor, emb: Tensor) -> Tensor:
        r"""Scores :math:`\mathbf{e}_u^{\top} \mathbf{e}_n` of each user's
        pooled embedding with the pooled per-layer embeddings :obj:`emb`
        (e.g. synthetic negatives, :attr:`SamplerOutput.neg_embeddings`).

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            emb (torch.Tensor): :math:`K` per-layer embeddings per user.

        Shapes:
            - **users:** :math:`(B)`
            - **emb:** :math:`(B, K, L + 1, D)`
            - **output:** :math:`(B, K)`
        """
        u = self.pool(self.user[users])  # [B, D]
        return (self.pool(emb) @ u.unsqueeze(-1)).squeeze(-1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.user.size(0)}, '
                f'num_items={self.item.size(0)}, '
                f'num_layers={self.num_layers}, dim={self.user.size(-1)})')


class Recommender(torch.nn.Module, ABC):
    r"""Base class of recommenders trained by :class:`~kgsampler.Trainer`.

    A recommender is a :class:`torch.nn.Module` that is also a
    :class:`~kgsampler.sampler.Scorer`. To plug in your own model, subclass
    this, set :obj:`num_users` and :obj:`num_items`, and implement
    :meth:`score` -- :math:`(B), (B, K) \to (B, K)`, higher is more
    relevant. Everything else has a default, to override where the model
    knows better:

    * :meth:`loss` -- BPR on :meth:`score` (no regulariser);
    * :meth:`full_scores` -- :meth:`score` of every item, for full-ranking
      evaluation (override with one matrix product where the model has one);
    * :meth:`similarity` (item-item, KGPolicy's similarity reward) -- the
      inner product of :meth:`item_representations`, which raises unless
      overridden;
    * :meth:`auxiliary_losses` -- extra objectives trained in their own
      phase after each epoch (e.g. KGAT's TransR loss); none by default.
      An objective trained jointly (e.g. CKE's) belongs in :meth:`loss`.

    Optional capabilities, discovered (not defined here, so that
    :obj:`hasattr` tells whether a model has them):

    * :obj:`layer_embeddings()` -- a :class:`LayerEmbeddings` of every
      user's and item's per-layer embeddings :math:`(U \text{ or } I, L + 1,
      D)` and the layer weights of the model's pooling, with gradients when
      autograd is on (:class:`~kgsampler.LightGCN` has it). Hop-mixing
      samplers (:class:`~kgsampler.sampler.MixGCF`) need it and raise a
      :class:`TypeError` naming the recommender without it.
    * :obj:`loss(users, pos_items, neg_items, neg_embeddings=None)` -- a
      loss that accepts synthetic negatives :math:`(B, N, L + 1, D)` in the
      layout of :obj:`layer_embeddings()` (:attr:`~kgsampler.sampler.
      SamplerOutput.neg_embeddings`) and scores them in place of
      :obj:`neg_items`' embeddings. The :class:`~kgsampler.Trainer` passes
      :obj:`neg_embeddings=` only when the sampler's output carries them,
      so a :meth:`loss` without the argument keeps working with every
      id-returning sampler.
    """
    num_users: int
    num_items: int

    @abstractmethod
    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Scores of user-item pairs; higher means more relevant.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """

    def loss(self, users: Tensor, pos_items: Tensor,
             neg_items: Tensor) -> Tensor:
        r"""Scalar training loss of a batch of (user, positive, negatives);
        by default BPR on :meth:`score`, :math:`-\frac{1}{BN}\sum
        \ln\sigma(s(u, i) - s(u, j))`.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            neg_items (torch.Tensor): :math:`N` negative item ids per row
                (e.g. :obj:`output.neg_items` of a
                :class:`~kgsampler.sampler.Sampler`), :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **pos_items:** :math:`(B)`
            - **neg_items:** :math:`(B, N)`
            - **output:** :math:`()`
        """
        pos = self.score(users, pos_items.view(-1, 1))  # [B, 1]
        neg = self.score(users, neg_items)  # [B, N]
        return -F.logsigmoid(pos - neg).mean()

    def full_scores(self, users: Tensor) -> Tensor:
        r"""Scores of every item, for full-ranking evaluation; by default
        :meth:`score` with every item as a candidate of every user, in chunks
        of at most :math:`2^{22}` pairs.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **output:** :math:`(B, |\mathcal{I}|)`
        """
        num_items = int(self.num_items)
        items = torch.arange(num_items, device=users.device)
        step = max(1, FULL_SCORES_CHUNK // max(num_items, 1))
        out = None  # preallocated: kept chunks would fragment the heap
        for start in range(0, users.numel(), step):
            u = users[start:start + step]
            rows = self.score(u, items.expand(u.numel(), num_items))
            if rows.shape != (u.numel(), num_items):
                raise ValueError(f"{type(self).__name__}.full_scores: "
                                 f"'score' must return shape "
                                 f"[{u.numel()}, {num_items}] (got "
                                 f"{tuple(rows.shape)})")
            if out is None:
                out = rows.new_empty((users.numel(), num_items))
            out[start:start + u.numel()] = rows
        if out is None:
            return items.new_zeros((0, num_items), dtype=torch.float)
        return out

    def item_representations(self, items: Tensor) -> Tensor:
        r"""Item vectors used by the default :meth:`similarity`. Raises
        :class:`NotImplementedError` unless overridden.

        Args:
            items (torch.Tensor): Item ids, :obj:`torch.long`.

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*, d)`
        """
        raise NotImplementedError(
            f"{self.__class__.__name__} implements neither similarity() nor "
            f"item_representations(); KGPolicy's similarity reward needs one")

    def similarity(self, items_a: Tensor, items_b: Tensor) -> Tensor:
        r"""Item-item similarity, inner product of
        :meth:`item_representations` by default.

        Args:
            items_a (torch.Tensor): Reference item ids, :obj:`torch.long`.
            items_b (torch.Tensor): Item ids compared with the row's
                :obj:`items_a`, :obj:`torch.long`.

        Shapes:
            - **items_a:** :math:`(B)`
            - **items_b:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        a = self.item_representations(items_a)
        b = self.item_representations(items_b)
        return (b @ a.unsqueeze(-1)).squeeze(-1)

    def auxiliary_losses(self, batch_size: int) -> Iterator[Tensor]:
        r"""Extra objectives trained alternately with :meth:`loss`: the
        :class:`~kgsampler.Trainer` iterates this once after each epoch's
        recommendation batches and takes one optimiser step on each yielded
        scalar (e.g. one per batch of knowledge-graph triples in KGAT's
        TransR phase). Code after the last :obj:`yield` runs once the phase
        is over (e.g. to refresh attention weights). Yields nothing by
        default.

        Args:
            batch_size (int): The trainer's batch size, as a hint for the
                size of each auxiliary batch.

        Shapes:
            - **output:** an iterator of :math:`()` tensors
        """
        return iter(())
