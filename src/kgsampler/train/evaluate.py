"""Full-ranking evaluation: every item is ranked for every evaluated user."""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR


def _discounts(k: int, device) -> Tensor:
    return 1.0 / torch.log2(torch.arange(k, device=device, dtype=torch.float) +
                            2.0)


def evaluate(score_fn: Callable[[Tensor], Tensor], ground_truth: UserItemCSR,
             exclude: Iterable[UserItemCSR] = (), ks: Sequence[int] = (20, ),
             batch_size: int = 4096, kgat_ndcg: bool = False,
             per_user: bool = False,
             users: Optional[Tensor] = None) -> Dict[str, object]:
    r"""Ranks all items for every user that has at least one ground-truth
    item and averages top-:math:`K` metrics over those users.

    Metrics at each :math:`K` (binary relevance, :math:`G_u` the user's
    ground truth, :math:`\text{hit}_r` whether rank :math:`r` is in it):

    * :obj:`recall@K` :math:`= |\text{top}_K \cap G_u| / |G_u|`;
    * :obj:`precision@K` :math:`= |\text{top}_K \cap G_u| / K`;
    * :obj:`hit@K` :math:`= [\,|\text{top}_K \cap G_u| > 0\,]`;
    * :obj:`ndcg@K` :math:`= \text{DCG}/\text{IDCG}` with
      :math:`\text{DCG} = \sum_{r<K} \text{hit}_r / \log_2(r + 2)` and the
      ideal list holding :math:`\min(|G_u|, K)` hits (the standard
      definition, as in RecBole);
    * :obj:`ndcg_kgat@K` (if :obj:`kgat_ndcg`): the variant of the KGAT /
      KGPolicy code, whose ideal list re-sorts only the hits found in the
      top :math:`K` (it is 1 whenever the single hit is ranked first), for
      comparison with the papers' tables.

    Args:
        score_fn (callable): Maps user ids :math:`(B)` to scores of every
            item :math:`(B, |\mathcal{I}|)`, e.g. :obj:`model.full_scores`.
        ground_truth (UserItemCSR): The held-out positives to find.
        exclude (iterable of UserItemCSR, optional): Known positives removed
            from the ranking (train; train and valid when testing).
            (default: :obj:`()`)
        ks (sequence of int, optional): Cut-offs. (default: :obj:`(20,)`)
        batch_size (int, optional): Users scored at once.
            (default: :obj:`4096`)
        kgat_ndcg (bool, optional): Also report :obj:`ndcg_kgat@K`.
            (default: :obj:`False`)
        per_user (bool, optional): Also return the per-user metric tensors
            under :obj:`"per_user"` and the user ids under :obj:`"users"`.
            (default: :obj:`False`)
        users (Tensor, optional): Rank only these users (ascending ids of
            users with at least one ground-truth item, e.g. one rank's slice
            in distributed evaluation); :obj:`None`: every user with a
            ground-truth item. (default: :obj:`None`)

    Shapes:
        - **score_fn input:** :math:`(B)` user ids (:obj:`torch.long`, on
          :obj:`ground_truth`'s device), :math:`B \leq` :obj:`batch_size`
        - **score_fn output:** :math:`(B, |\mathcal{I}|)`
        - **per_user:** :math:`(|\mathcal{U}'|)` per metric, and **users**
          :math:`(|\mathcal{U}'|)`, :math:`\mathcal{U}'` the users with at
          least one ground-truth item
    """
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        raise ValueError(f"evaluate: 'ks' must be a sequence of positive ints "
                         f"(got {ks!r})")
    ks_in = list(ks)
    if not ks_in or any(isinstance(k, bool) or not isinstance(k, int) or
                        k < 1 for k in ks_in):
        raise ValueError(f"evaluate: 'ks' must be a sequence of positive ints "
                         f"(got {ks_in!r})")
    ks = sorted(set(ks_in))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or \
            batch_size < 1:
        raise ValueError(f"evaluate: 'batch_size' must be a positive int "
                         f"(got {batch_size!r})")
    exclude = list(exclude)
    for name, csr in [('ground_truth', ground_truth)] + [
            (f'exclude[{i}]', e) for i, e in enumerate(exclude)]:
        if not isinstance(csr, UserItemCSR):
            raise TypeError(f"evaluate: '{name}' must be a UserItemCSR (got "
                            f"{type(csr).__name__})")
        if (csr.num_rows, csr.num_cols) != (ground_truth.num_rows,
                                            ground_truth.num_cols):
            raise ValueError(f"evaluate: '{name}' must have the shape of "
                             f"'ground_truth', {(ground_truth.num_rows, ground_truth.num_cols)} "
                             f"(got {(csr.num_rows, csr.num_cols)})")
    # a `with` block rather than a @torch.no_grad() decorator: the same
    # effect, and mutation testing (mutmut skips decorated functions) can
    # reach this function's body (benchmarks/mutation.sh)
    with torch.no_grad():
        return _evaluate(score_fn, ground_truth, exclude, ks, batch_size,
                         kgat_ndcg, per_user, users)


def _evaluate(score_fn: Callable[[Tensor], Tensor], ground_truth: UserItemCSR,
              exclude: List[UserItemCSR], ks: List[int], batch_size: int,
              kgat_ndcg: bool, per_user: bool,
              users: Optional[Tensor]) -> Dict[str, object]:
    """:func:`evaluate` after its arguments were checked (ks sorted and
    deduplicated), under :func:`torch.no_grad`."""
    num_items = ground_truth.num_cols
    device = ground_truth.device
    max_k = min(ks[-1], num_items)
    disc = _discounts(max_k, device)
    ideal_cum = torch.cumsum(disc, 0)  # IDCG for n hits = ideal_cum[n - 1]
    gt_deg = ground_truth.degree()
    if users is None:
        users = (gt_deg > 0).nonzero().view(-1)
    else:
        if not isinstance(users, Tensor) or users.dtype != torch.long or \
                users.dim() != 1:
            raise TypeError(f"evaluate: 'users' must be None or a 1-dim "
                            f"torch.long tensor (got "
                            f"{getattr(users, 'dtype', type(users))})")
        users = users.to(device)
        if users.numel() and (int(users.min()) < 0 or
                              int(users.max()) >= ground_truth.num_rows or
                              bool((gt_deg[users] == 0).any())):
            raise ValueError(f"evaluate: 'users' must hold ids of users "
                             f"with at least one ground-truth item (got "
                             f"{users.tolist()[:10]})")
    names = ['recall', 'precision', 'hit', 'ndcg'] + (['ndcg_kgat']
                                                      if kgat_ndcg else [])
    out = {f'{m}@{k}': torch.zeros(users.numel(), device=device)
           for m in names for k in ks}

    for start in range(0, users.numel(), batch_size):
        u = users[start:start + batch_size]
        scores = score_fn(u).float()
        if scores.shape != (u.numel(), num_items):
            raise ValueError(f"evaluate: 'score_fn' must return shape "
                             f"[{u.numel()}, {num_items}] (got "
                             f"{tuple(scores.shape)})")
        for csr in exclude:
            r, c = csr.gather_rows(u)
            scores[r, c] = -math.inf
        top = scores.topk(max_k, dim=-1).indices  # [B, K]
        gt = torch.zeros(u.numel(), num_items, dtype=torch.bool,
                         device=device)
        r, c = ground_truth.gather_rows(u)
        gt[r, c] = True
        hits = gt.gather(1, top).float()  # [B, K]
        n_gt = gt_deg[u].float()
        sl = slice(start, start + u.numel())
        cum_hits = torch.cumsum(hits, 1)
        dcg = torch.cumsum(hits * disc, 1)
        for k in ks:
            kk = min(k, max_k)
            h = cum_hits[:, kk - 1]
            out[f'recall@{k}'][sl] = h / n_gt
            out[f'precision@{k}'][sl] = h / k
            out[f'hit@{k}'][sl] = (h > 0).float()
            n_ideal = torch.clamp(n_gt, max=kk).long()
            out[f'ndcg@{k}'][sl] = dcg[:, kk - 1] / ideal_cum[n_ideal - 1]
            if kgat_ndcg:
                n_hit = h.long()
                idcg = torch.where(n_hit > 0,
                                   ideal_cum[(n_hit - 1).clamp(min=0)],
                                   torch.ones_like(h))
                out[f'ndcg_kgat@{k}'][sl] = dcg[:, kk - 1] / idcg

    return summarize(out, users, per_user)


def summarize(out: Dict[str, Tensor], users: Tensor,
              per_user: bool = False) -> Dict[str, object]:
    r"""What :func:`evaluate` returns, from its per-user metrics: the mean
    of each (0 without users), :obj:`"num_users"`, and with
    :obj:`per_user` the tensors themselves (:obj:`"per_user"`,
    :obj:`"users"`).

    Shapes:
        - **out:** :math:`(|\mathcal{U}'|)` per metric
        - **users:** :math:`(|\mathcal{U}'|)`
    """
    result: Dict[str, object] = {
        key: (float(v.mean()) if v.numel() else 0.0)
        for key, v in out.items()
    }
    result['num_users'] = int(users.numel())
    if per_user:
        result['per_user'] = out
        result['users'] = users
    return result
