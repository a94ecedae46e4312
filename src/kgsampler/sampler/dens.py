r"""Disentangled negative sampling (DENS)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import (ModuleSamplerMixin, Sampler,
                                    SamplerOutput, Scorer,
                                    check_update_batch)
from kgsampler.sampler.hard_negative import check_finite
from kgsampler.utils._checks import positive_int


@dataclass
class DENSFactors:
    r"""The relevant and irrelevant factors that :class:`DENS`'s gates split
    a positive item and its candidates into (:math:`\mathbf{x} =
    \mathbf{x}^{r} + \mathbf{x}^{ir}`).

    Args:
        pos_relevant (torch.Tensor): :math:`\mathbf{p}^{r} = \mathbf{p}
            \odot \mathbf{g}_p`, :math:`(B, d)`.
        pos_irrelevant (torch.Tensor): :math:`\mathbf{p} - \mathbf{p}^{r}`,
            :math:`(B, d)`.
        neg_relevant (torch.Tensor): :math:`\mathbf{n}^{r} = \mathbf{n}
            \odot \mathbf{g}_n`, :math:`(B, K, d)`.
        neg_irrelevant (torch.Tensor): :math:`\mathbf{n} - \mathbf{n}^{r}`,
            :math:`(B, K, d)`.
        pos_gate (torch.Tensor): :math:`\mathbf{g}_p \in (0, 1)^d`,
            :math:`(B, d)`.
        neg_gate (torch.Tensor): :math:`\mathbf{g}_n \in (0, 1)^d`,
            :math:`(B, K, d)`.
    """
    pos_relevant: Tensor
    pos_irrelevant: Tensor
    neg_relevant: Tensor
    neg_irrelevant: Tensor
    pos_gate: Tensor
    neg_gate: Tensor


def _k_pair(x: Tensor) -> Tensor:
    r""":math:`\log(1 + \sum_k e^{x_k})` over the last dimension, stably."""
    zero = x.new_zeros(x.shape[:-1] + (1, ))
    return torch.logsumexp(torch.cat([zero, x], dim=-1), dim=-1)


class DENS(ModuleSamplerMixin, Sampler, torch.nn.Module):
    r"""Disentangled negative sampling (Lai et al., WSDM 2023,
    "Disentangled Negative Sampling for Collaborative Filtering"): gating
    modules split the positive item's and each candidate's representation
    into a *relevant* factor (what made the user choose the positive) and an
    *irrelevant* one, and the negative is the candidate that is hard on the
    relevant factor in the paper's sense (it is least relevant to the user
    there) while it still scores well overall.

    For a row :math:`(u, i)` with user vector :math:`\mathbf{u}`, positive
    vector :math:`\mathbf{p}` and :obj:`num_candidates` :math:`M` uniform
    non-positive candidates :math:`\mathbf{n}_j` (the recommender's own
    representations, read without gradients),

    .. math::
        \mathbf{g}_p &= \sigma(\mathbf{W}_1 \mathbf{p} +
        \mathbf{W}_2 \mathbf{u}), \quad \mathbf{p}^{r} = \mathbf{p} \odot
        \mathbf{g}_p, \\
        \mathbf{g}_{n_j} &= \sigma(\mathbf{W}_3 \mathbf{n}_j +
        \mathbf{W}_4 \mathbf{p}^{r}), \quad \mathbf{n}_j^{r} = \mathbf{n}_j
        \odot \mathbf{g}_{n_j}, \quad \mathbf{n}_j^{ir} = \mathbf{n}_j -
        \mathbf{n}_j^{r},

    (:math:`\mathbf{W}_k` affine maps :math:`d \to d`), and the negative is

    .. math::
        j^* = \arg\max_j \; \mathbf{u}^{\top}\big(
        (1 - \min(1, t / T_w))\, \mathbf{n}_j - \mathbf{n}_j^{r}\big)

    in epoch :math:`t = 0, 1, \ldots` (:obj:`warmup` :math:`T_w`): at first
    the candidate whose *irrelevant* factor the user scores highest
    (:math:`\mathbf{u}^{\top}\mathbf{n}^{ir}_j`), after the warm-up the one
    whose *relevant* factor the user scores lowest
    (:math:`-\mathbf{u}^{\top}\mathbf{n}^{r}_j`), as the released code's
    rule. :obj:`num_candidates=1` is RNS.

    The gates are trained in :meth:`update` on the batch's chosen negatives
    with the released code's four-part loss: with :math:`s(\mathbf{x}) =
    \mathbf{u}^{\top}\mathbf{x}` and :math:`\ell(x) = \log(1 + \sum_k
    e^{x_k})` over the row's :math:`N` negatives,

    .. math::
        \mathcal{L}_g = \tfrac{1}{4}\big[\ell(s(\mathbf{p}^{ir}) -
        s(\mathbf{p}^{r})) + \ell(s(\mathbf{n}^{r}) - s(\mathbf{n}^{ir}))
        + \ell(s(\mathbf{n}^{r}) - s(\mathbf{p}^{r})) +
        \ell(s(\mathbf{p}^{ir}) - s(\mathbf{n}^{ir}))\big]:

    the positive's relevant factor outscores its irrelevant one and the
    negative's, the negative's irrelevant factor outscores its relevant one
    and the positive's irrelevant one.

    Where this deviates from the released code (``Riwei-HEU/DENS``,
    ``modules/LightGCN.py``): (1) the gates have their own Adam optimiser
    and are trained on *detached* recommender representations, after the
    recommender's step; the released code adds :math:`\gamma
    \mathcal{L}_g` (:math:`\gamma = 0.3`) to the recommender's loss, so
    that it also shapes the embeddings. With the gates trained alone by
    Adam a constant factor on :math:`\mathcal{L}_g` hardly changes the
    steps, so there is no :math:`\gamma`. (2) The negative is a real item
    chosen with the recommender's final representations (LightGCN: the
    layer mean); the released code gates and selects per propagation layer
    and trains on the resulting layer-mixed synthetic embedding (as
    MixGCF's hop mixing). (3) Candidates are drawn per negative from the
    user's non-positives as every sampler here; :math:`N > 1` negatives
    enter :math:`\mathcal{L}_g` as the released :math:`K`-pair form.

    The recommender must provide user and item vectors whose inner product
    is its score: :meth:`~kgsampler.recommender.Recommender.item_representations`
    and either a :obj:`user_representations(users)` method, a
    :obj:`get_embedding()` table with the users first (:class:`LightGCN`,
    :class:`KGAT`) or a :obj:`user_emb` embedding (:class:`MF`,
    :class:`CKE`); :meth:`set_scorer` checks this on a few pairs and raises
    :class:`TypeError` otherwise (e.g. :class:`NFM`, :class:`RippleNet`).

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender; can also be set later
            with :meth:`set_scorer` (then :obj:`embedding_dim` is needed).
        num_candidates (int, optional): Uniform candidates :math:`M` per
            negative. (default: :obj:`8`; the released code used 6)
        warmup (int, optional): Epochs :math:`T_w` over which the weight
            of :math:`\mathbf{u}^{\top}\mathbf{n}_j` falls from 1 to 0; 0:
            at once. (default: :obj:`100`, as released)
        embedding_dim (int, optional): Size :math:`d` of the recommender's
            vectors; :obj:`None`: read from :obj:`scorer`.
            (default: :obj:`None`)
        lr (float, optional): Adam learning rate of the gates.
            (default: :obj:`1e-3`, as released)
        weight_decay (float, optional): Adam weight decay of the gates.
            (default: :obj:`0.0`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    learnable = True
    requires_scorer = True

    def __init__(self, train_pos: UserItemCSR,
                 scorer: Optional[Scorer] = None, num_candidates: int = 8,
                 warmup: int = 100, embedding_dim: Optional[int] = None,
                 lr: float = 1e-3, weight_decay: float = 0.0, **kwargs):
        torch.nn.Module.__init__(self)
        Sampler.__init__(self, train_pos, **kwargs)
        self.num_candidates = positive_int('DENS', 'num_candidates',
                                           num_candidates)
        self.warmup = positive_int('DENS', 'warmup', warmup, low=0)
        self.lr = check_finite('DENS', 'lr', lr, positive=True)
        self.weight_decay = check_finite('DENS', 'weight_decay',
                                         weight_decay, non_negative=True)
        if embedding_dim is not None:
            embedding_dim = positive_int('DENS', 'embedding_dim',
                                         embedding_dim)
        if scorer is not None:
            d = self._probe(scorer)[1]
            if embedding_dim is not None and embedding_dim != d:
                raise ValueError(f"DENS: 'embedding_dim' must be the size "
                                 f"of {type(scorer).__name__}'s vectors, "
                                 f"{d} (got {embedding_dim})")
            embedding_dim = d
        if embedding_dim is None:
            raise ValueError("DENS: pass 'scorer' or 'embedding_dim' (the "
                             "gates' size) (got neither)")
        self.embedding_dim = embedding_dim
        d = embedding_dim
        self.user_gate = torch.nn.Linear(d, d)  # W_2
        self.item_gate = torch.nn.Linear(d, d)  # W_1
        self.pos_gate = torch.nn.Linear(d, d)  # W_4
        self.neg_gate = torch.nn.Linear(d, d)  # W_3
        self.epoch = -1  # no epoch started
        self._user_vectors: Optional[Callable[[Tensor], Tensor]] = None
        self.reset_parameters()
        self._reset_diagnostics()
        if scorer is not None:
            self.set_scorer(scorer)

    @classmethod
    def from_dataset(cls, dataset, scorer: Optional[Scorer] = None,
                     track_false_negatives: bool = True,
                     **kwargs) -> 'DENS':
        r"""Builds DENS from a :class:`~kgsampler.data.KGRecDataset`; the
        gates' size is read from :obj:`scorer` unless :obj:`embedding_dim`
        is given.

        Args:
            dataset (KGRecDataset): The dataset.
            scorer (Scorer, optional): The recommender.
            track_false_negatives (bool, optional): Count negatives that are
                validation positives. (default: :obj:`True`)
            **kwargs (optional): Arguments of :class:`DENS`.
        """
        cls._monitor_kwargs(dataset, track_false_negatives, kwargs)
        return cls(dataset.train_pos, scorer=scorer, **kwargs)

    def __setattr__(self, name, value):
        if name == 'scorer':  # never register the recommender as a submodule
            object.__setattr__(self, name, value)
        else:
            torch.nn.Module.__setattr__(self, name, value)

    def reset_parameters(self) -> None:
        for lin in (self.user_gate, self.item_gate, self.pos_gate,
                    self.neg_gate):
            lin.reset_parameters()
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr,
                                          weight_decay=self.weight_decay)

    def _follow_parameters(self) -> None:
        super()._follow_parameters()
        self._sums = self._sums.to(self.user_gate.weight.device)

    # ----------------------------------------------------- the recommender
    @staticmethod
    def _find_user_vectors(scorer) -> Optional[Callable[[Tensor], Tensor]]:
        own = getattr(scorer, 'user_representations', None)
        if callable(own):
            return own
        table = getattr(scorer, 'get_embedding', None)
        if callable(table) and isinstance(getattr(scorer, 'num_users', None),
                                          int):
            return lambda users: table()[users]
        emb = getattr(scorer, 'user_emb', None)
        if isinstance(emb, torch.nn.Embedding):
            return emb
        return None

    @classmethod
    def supports(cls, scorer) -> bool:
        r"""Whether :obj:`scorer` provides what DENS needs: user and item
        vectors whose inner product is its score (see :meth:`set_scorer`).

        Args:
            scorer (Scorer): The recommender.
        """
        try:
            cls._probe_vectors(scorer, int(scorer.num_users),
                               int(scorer.num_items), torch.device('cpu'))
        except (TypeError, AttributeError, ValueError):
            return False
        return True

    def _probe(self, scorer) -> tuple:
        return self._probe_vectors(scorer, self.num_users, self.num_items,
                                   self.train_pos.device)

    @classmethod
    def _probe_vectors(cls, scorer, num_users: int, num_items: int,
                       fallback: torch.device) -> tuple:
        r"""The recommender's user-vector function and vector size, checked
        on a few (user, item) pairs: its score must be the inner product of
        its user vectors and :meth:`item_representations`."""
        name = type(scorer).__name__
        need = ("DENS needs the recommender's user and item vectors whose "
                "inner product is its score (item_representations() and a "
                "user_representations() method, a get_embedding() table "
                "with the users first, or a user_emb embedding)")
        if not isinstance(scorer, Scorer):
            raise TypeError(f"DENS: 'scorer' must implement score(users, "
                            f"items) (got {name})")
        user_fn = cls._find_user_vectors(scorer)
        if user_fn is None or not callable(
                getattr(scorer, 'item_representations', None)):
            raise TypeError(f"{need}; {name} has no user vectors")
        params = getattr(scorer, 'parameters', None)
        first = next(iter(params()), None) if callable(params) else None
        dev = first.device if first is not None else fallback
        users = torch.arange(min(4, num_users), device=dev)
        items = torch.arange(min(4, num_items), device=dev).expand(
            users.numel(), -1)
        with torch.no_grad():
            try:
                uv = user_fn(users)
                iv = scorer.item_representations(items)
            except NotImplementedError as e:
                raise TypeError(f"{need}; {name}: {e}") from e
            s = scorer.score(users, items).double()
            if uv.dim() != 2 or iv.shape[:-1] != items.shape or \
                    uv.size(-1) != iv.size(-1):
                raise TypeError(f"{need}; {name}'s user vectors "
                                f"{tuple(uv.shape)} and item vectors "
                                f"{tuple(iv.shape)} do not pair up")
            dot = (iv.double() @ uv.double().unsqueeze(-1)).squeeze(-1)
            if not torch.allclose(s, dot, rtol=1e-3, atol=1e-4):
                raise TypeError(f"{need}; {name}'s score is not the inner "
                                f"product of those vectors")
        return user_fn, int(uv.size(-1))

    def set_scorer(self, scorer: Scorer) -> None:
        """Sets the recommender, after checking that it provides user and
        item vectors of size :obj:`embedding_dim` whose inner product is
        its score (:class:`TypeError`, :class:`ValueError` otherwise)."""
        user_fn, d = self._probe(scorer)
        if d != self.embedding_dim:
            raise ValueError(f"DENS: {type(scorer).__name__}'s vectors have "
                             f"size {d}, the gates 'embedding_dim'="
                             f"{self.embedding_dim}")
        self.scorer = scorer
        self._user_vectors = user_fn

    @torch.no_grad()
    def _vectors(self, users: Tensor, pos_items: Tensor, items: Tensor):
        dt = self.user_gate.weight.dtype
        return (self._user_vectors(users).to(dt),
                self.scorer.item_representations(pos_items).to(dt),
                self.scorer.item_representations(items).to(dt))

    # -------------------------------------------------------------- factors
    def gate(self, u: Tensor, p: Tensor, n: Tensor) -> DENSFactors:
        r"""The gating modules on given vectors (differentiable in the
        gates' parameters).

        Args:
            u (torch.Tensor): User vectors.
            p (torch.Tensor): Positive item vectors.
            n (torch.Tensor): Candidate item vectors.

        Shapes:
            - **u, p:** :math:`(B, d)`
            - **n:** :math:`(B, K, d)`
            - **output:** a :class:`DENSFactors`
        """
        g_p = torch.sigmoid(self.item_gate(p) + self.user_gate(u))
        p_r = p * g_p
        g_n = torch.sigmoid(self.neg_gate(n) +
                            self.pos_gate(p_r).unsqueeze(1))
        n_r = n * g_n
        return DENSFactors(p_r, p - p_r, n_r, n - n_r, g_p, g_n)

    def factors(self, users: Tensor, pos_items: Tensor,
                items: Tensor) -> DENSFactors:
        r"""The relevant and irrelevant factors of each row's positive and
        of its items, from the recommender's current vectors.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            items (torch.Tensor): Items to split, :obj:`torch.long`.

        Shapes:
            - **users, pos_items:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** a :class:`DENSFactors`
        """
        return self.gate(*self._vectors(users, pos_items, items))

    @property
    def relevant_weight(self) -> float:
        r"""The weight :math:`1 - \min(1, t / T_w)` of
        :math:`\mathbf{u}^{\top}\mathbf{n}_j` in the current epoch."""
        t = max(self.epoch, 0)
        return 0.0 if self.warmup == 0 else 1.0 - min(1.0, t / self.warmup)

    @torch.no_grad()
    def selection_scores(self, users: Tensor, pos_items: Tensor,
                         items: Tensor) -> Tensor:
        r"""The selection score :math:`\mathbf{u}^{\top}((1 - \min(1,
        t/T_w))\,\mathbf{n}_j - \mathbf{n}_j^{r})` of each row's items (the
        largest is chosen).

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            items (torch.Tensor): Candidate items, :obj:`torch.long`.

        Shapes:
            - **users, pos_items:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        return self._scores(*self._vectors(users, pos_items, items))[0]

    def _scores(self, u: Tensor, p: Tensor, n: Tensor):
        f = self.gate(u, p, n)
        full = (n @ u.unsqueeze(-1)).squeeze(-1)
        rel = (f.neg_relevant @ u.unsqueeze(-1)).squeeze(-1)
        return self.relevant_weight * full - rel, full

    def on_epoch_start(self, epoch: int) -> None:
        """Counts the epoch (the warm-up schedule's :math:`t`)."""
        self.epoch += 1

    # ------------------------------------------------------------- sampling
    @torch.no_grad()
    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        B, N, M = users.numel(), num_neg, self.num_candidates
        cand = self.uniform_negatives(users.view(-1, 1).expand(B, N * M))
        score, full = self._scores(*self._vectors(users, pos_items, cand))
        best = score.view(B, N, M).argmax(-1, keepdim=True)  # [B, N, 1]
        dns = full.view(B, N, M).argmax(-1, keepdim=True)
        self._sums[5] += (best == dns).sum().to(self._sums.dtype)
        self._sums[6] += B * N
        neg = cand.view(B, N, M).gather(-1, best).squeeze(-1)
        return SamplerOutput(neg)

    def update(self, users: Tensor, pos_items: Tensor,
               output: SamplerOutput) -> Dict[str, Union[float, Tensor]]:
        r"""One Adam step of the gates on the gate loss
        :math:`\mathcal{L}_g` of the batch's negatives, with the
        recommender's current vectors (detached).

        Args:
            users (torch.Tensor): The users :obj:`output` was sampled for,
                :obj:`torch.long`.
            pos_items (torch.Tensor): Their positive items,
                :obj:`torch.long`.
            output (SamplerOutput): The :meth:`sample` output.

        Shapes:
            - **users, pos_items:** :math:`(B)`
            - **output.neg_items:** :math:`(B, N)`

        Returns :obj:`sampler_gate_loss`, a 0-dim tensor."""
        if not isinstance(output, SamplerOutput) or \
                not isinstance(output.neg_items, Tensor) or \
                output.neg_items.dim() != 2:
            raise TypeError(f"DENS.update: 'output' must be the "
                            f"SamplerOutput of DENS.sample (got "
                            f"{type(output).__name__})")
        B = output.neg_items.size(0)
        check_update_batch('DENS', users, pos_items, B)
        self._updated()
        u, p, n = self._vectors(users, pos_items, output.neg_items)
        f = self.gate(u, p, n)
        uu = u.unsqueeze(-1)
        s_pr = (f.pos_relevant * u).sum(-1)  # [B]
        s_pir = (f.pos_irrelevant * u).sum(-1)
        s_nr = (f.neg_relevant @ uu).squeeze(-1)  # [B, N]
        s_nir = (f.neg_irrelevant @ uu).squeeze(-1)
        loss = (F.softplus(s_pir - s_pr) + _k_pair(s_nr - s_nir) +
                _k_pair(s_nr - s_pr.unsqueeze(-1)) +
                _k_pair(s_pir.unsqueeze(-1) - s_nir)).mean() / 4
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self._sums[:5] += torch.stack([
                loss.detach(), f.pos_gate.mean(), f.neg_gate.mean(),
                (s_pr > s_pir).float().mean(),
                (s_nir > s_nr).float().mean()]).to(self._sums.dtype)
            self._sums[7] += 1
        return {'sampler_gate_loss': loss.detach()}

    # ----------------------------------------------------------- reporting
    def _reset_diagnostics(self) -> None:
        # gate loss, gate_pos, gate_neg, pos wins, neg wins (sums over
        # updates), DNS agreements, selections, updates
        self._sums = torch.zeros(8, dtype=torch.float64,
                                 device=self.user_gate.weight.device)

    def diagnostics(self) -> Dict[str, float]:
        r"""Since the last call: :obj:`relevant_weight` (the schedule),
        :obj:`gate_loss` (mean :math:`\mathcal{L}_g`), :obj:`gate_pos` and
        :obj:`gate_neg` (mean gate values :math:`\mathbf{g}_p`,
        :math:`\mathbf{g}_n`), :obj:`pos_relevant_wins` (share of rows with
        :math:`s(\mathbf{p}^{r}) > s(\mathbf{p}^{ir})`),
        :obj:`neg_irrelevant_wins` (share of negatives with
        :math:`s(\mathbf{n}^{ir}) > s(\mathbf{n}^{r})`) and
        :obj:`dns_agreement` (share of negatives that DNS would have chosen
        from the same candidates)."""
        s = self._sums.tolist()
        out = {'relevant_weight': self.relevant_weight}
        if s[7]:
            for k, v in zip(('gate_loss', 'gate_pos', 'gate_neg',
                             'pos_relevant_wins', 'neg_irrelevant_wins'),
                            s[:5]):
                out[k] = v / s[7]
        if s[6]:
            out['dns_agreement'] = s[5] / s[6]
        self._reset_diagnostics()
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'num_candidates={self.num_candidates}, '
                f'warmup={self.warmup}, embedding_dim={self.embedding_dim})')
