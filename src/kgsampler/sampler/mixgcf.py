"""MixGCF: synthetic hard negatives by positive mixing and hop mixing."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import Sampler, SamplerOutput, Scorer


class MixGCF(Sampler):
    r"""MixGCF from the `"MixGCF: An Improved Training Method for Graph
    Neural Network-based Recommender Systems"
    <https://doi.org/10.1145/3447548.3467408>`_ paper (Huang et al., KDD
    2021): rather than picking an item, it synthesises each negative from
    the per-layer embeddings of a GNN recommender (its
    :obj:`layer_embeddings()` capability, e.g. :class:`~kgsampler.LightGCN`).

    For each negative of a row :math:`(u, p)`, draw :math:`M` uniform
    non-positive candidates :math:`n_1, \dots, n_M`; then

    * **positive mixing**, per layer :math:`l = 0..L` with
      :math:`\alpha^{(l)} \sim U(0, 1)` drawn per row, negative and layer
      (shared by the candidates): :math:`\mathbf{e}'^{(l)}_{n_m} =
      \alpha^{(l)} \mathbf{e}^{(l)}_p + (1 - \alpha^{(l)})
      \mathbf{e}^{(l)}_{n_m}`;
    * **hop mixing**, per layer: keep the candidate whose mixed embedding
      the user scores highest, :math:`\mathbf{e}'^{(l)}_n =
      \arg\max_m \mathbf{e}_u^{\top} \mathbf{e}'^{(l)}_{n_m}`, with the
      user's *pooled* embedding :math:`\mathbf{e}_u = \sum_l w_l
      \mathbf{e}^{(l)}_u` as the query (the paper's :math:`f_Q(u, l)` for
      sum-based pooling, and what the released code does for LightGCN's
      mean pooling; per-layer user embeddings are its query only under
      concatenation pooling, NGCF's);

    and the synthetic negative is the per-layer stack
    :math:`(\mathbf{e}'^{(0)}_n, \dots, \mathbf{e}'^{(L)}_n)`, returned with
    gradients (into the positive's and the chosen candidates' embeddings)
    in :attr:`SamplerOutput.neg_embeddings`; the recommender's
    :meth:`loss` pools it (LightGCN: :math:`\sum_l \alpha_l`, the mean by
    default) and scores it in BPR, with L2 on its layer-0 part, as the
    released code does. The :class:`~kgsampler.Trainer` passes it on.

    :obj:`neg_items` holds, per negative, the real candidate chosen at the
    most layers (ties to the lowest layer, so layer 0's at
    :math:`L + 1 \le 2` or when every layer chose differently): a uniform
    non-positive, never a training positive, for id-only code (the
    false-negative rate, the positive check of :meth:`Sampler.sample`,
    :meth:`score`-based diagnostics).

    Since :math:`1 - \alpha^{(l)} > 0`, the hop-mixing choice equals the
    argmax of :math:`\mathbf{e}_u^{\top} \mathbf{e}^{(l)}_{n_m}` over the
    raw candidates; it is computed that way (without gradients, on the
    detached embeddings), and only the :math:`L + 1` chosen embeddings are
    gathered with gradients. :attr:`lookahead` stays 1: the synthetic
    negatives carry the autograd graph of the current parameters, so they
    are drawn for one batch at a time, right before its recommender step.

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender; it must have
            :obj:`layer_embeddings()` returning a
            :class:`~kgsampler.recommender.base.LayerEmbeddings`. Can also be
            set later with :meth:`set_scorer`. (default: :obj:`None`)
        num_candidates (int, optional): Candidates per negative :math:`M`
            (the released code's :obj:`n_negs`: 64 for Yelp2018, 32 for
            Alibaba, 16 for Amazon). (default: :obj:`16`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    requires_scorer = True

    def __init__(self, train_pos: UserItemCSR, scorer: Optional[Scorer] = None,
                 num_candidates: int = 16, **kwargs):
        super().__init__(train_pos, **kwargs)
        if isinstance(num_candidates, bool) or not isinstance(
                num_candidates, int) or num_candidates < 1:
            raise ValueError(f"MixGCF: 'num_candidates' must be a positive "
                             f"int (got {num_candidates!r})")
        self.num_candidates = num_candidates
        if scorer is not None:
            self.set_scorer(scorer)

    @staticmethod
    def supports(scorer) -> bool:
        r"""Whether :obj:`scorer` offers the :obj:`layer_embeddings()`
        capability MixGCF needs."""
        return callable(getattr(scorer, 'layer_embeddings', None))

    def set_scorer(self, scorer: Scorer) -> None:
        r"""Sets the recommender; it must have :obj:`layer_embeddings()`
        (raises :class:`TypeError` naming it otherwise)."""
        if not self.supports(scorer):
            raise TypeError(
                f"MixGCF: the recommender {type(scorer).__name__} has no "
                f"layer_embeddings(); MixGCF mixes per-layer embeddings of a "
                f"GNN recommender (e.g. LightGCN), use another sampler with "
                f"{type(scorer).__name__}")
        super().set_scorer(scorer)

    def _layers(self):
        le = self.scorer.layer_embeddings()
        cls = type(self.scorer).__name__
        ok = all(isinstance(getattr(le, n, None), Tensor)
                 for n in ('user', 'item', 'weight'))
        if ok:
            ok = (le.user.dim() == 3 and le.item.dim() == 3
                  and le.user.size(0) == self.num_users
                  and le.item.size(0) == self.num_items
                  and le.user.shape[1:] == le.item.shape[1:]
                  and le.weight.shape == (le.user.size(1), ))
        if not ok:
            raise RuntimeError(
                f"MixGCF: {cls}.layer_embeddings() must return user "
                f"({self.num_users}, L + 1, D) and item ({self.num_items}, "
                f"L + 1, D) embeddings and (L + 1) layer weights (got "
                f"{le!r})")
        return le

    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        B, N, M = users.numel(), num_neg, self.num_candidates
        le = self._layers()
        L1 = le.weight.numel()
        cand = self.uniform_negatives(
            users.view(-1, 1).expand(-1, N * M)).view(B, N, M)
        with torch.no_grad():  # hop mixing: only an argmax
            query = le.pool(le.user.detach()[users])  # [B, D]
            c = le.item.detach()[cand]  # [B, N, M, L + 1, D]
            scores = (c @ query.view(B, 1, 1, -1, 1)).squeeze(-1)
            pick = scores.argmax(dim=2)  # [B, N, L + 1], index into M
        layer = torch.arange(L1, device=users.device)
        chosen = cand.gather(2, pick)  # [B, N, L + 1] item ids per layer
        neg_layers = le.item[chosen, layer]  # [B, N, L + 1, D], with grad
        pos_layers = le.item[pos_items].unsqueeze(1)  # [B, 1, L + 1, D]
        alpha = torch.rand(B, N, L1, 1, device=users.device,
                           dtype=neg_layers.dtype)
        synth = alpha * pos_layers + (1 - alpha) * neg_layers
        # the real item: the candidate chosen at the most layers
        votes = (pick.unsqueeze(-1) == pick.unsqueeze(-2)).sum(-1)
        mode = votes.argmax(dim=-1, keepdim=True)  # first max: lowest layer
        neg_items = chosen.gather(2, mode).squeeze(2)  # [B, N]
        return SamplerOutput(neg_items, neg_embeddings=synth)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'num_candidates={self.num_candidates})')
