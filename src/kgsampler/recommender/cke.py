"""CKE (Zhang et al., KDD 2016): matrix factorisation whose item vectors add
the item's TransR entity embedding, trained jointly with TransR."""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.recommender.transr import TransR
from kgsampler.recommender.base import Recommender, bpr_l2
from kgsampler.utils._checks import positive_int as _positive_int

#: Redraws of a corrupted tail that hits a true triple (then it is kept).
_NEG_TRIES = 4




def _non_negative(cls: str, name: str, v: Any, positive: bool = False):
    ok = not isinstance(v, bool) and isinstance(v, numbers.Real) and \
        math.isfinite(v) and (v > 0 if positive else v >= 0)
    if not ok:
        what = 'positive' if positive else 'non-negative'
        raise ValueError(f"{cls}: '{name}' must be a finite {what} number "
                         f"(got {v!r})")
    return float(v)


class CKE(Recommender):
    r"""The structural-knowledge part of CKE from the `"Collaborative
    Knowledge Base Embedding for Recommender Systems"
    <https://doi.org/10.1145/2939672.2939673>`_ paper, as the KGAT and
    KGPolicy papers use it as a baseline: an item's vector is its
    collaborative embedding plus the :class:`TransR` embedding of the
    item's KG entity (item :math:`i` is entity :math:`i`),

    .. math::
        \mathbf{v}_i = \mathbf{e}_i + \mathbf{x}_i, \qquad
        \hat{y}_{ui} = \mathbf{e}_u^{\top} \mathbf{v}_i,

    and the two objectives are trained jointly, each batch of
    :math:`B` (user, positive, :math:`N` negatives) rows with a batch of
    :math:`n` KG triples :math:`(h, r, t)` drawn uniformly inside
    :meth:`loss`, each with a uniformly corrupted tail :math:`t'` (redrawn
    when :math:`(h, r, t')` is itself in the KG):

    .. math::
        \mathcal{L} = -\frac{1}{BN} \sum_{(u,i,j)} \ln \sigma(\hat{y}_{ui} -
        \hat{y}_{uj}) + \lambda_{KG} \Big(-\frac{1}{n} \sum_{(h,r,t,t')}
        \ln \sigma(f(h, r, t) - f(h, r, t'))\Big) + \lambda
        \frac{1}{B} \sum_{(u,i,j)} \left( \|\mathbf{e}_u\|^2 +
        \|\mathbf{v}_i\|^2 + \frac{1}{N}\sum_j \|\mathbf{v}_j\|^2
        \right) / 2

    with the TransR score :math:`f(h, r, t) = -\|\bar{\mathbf{h}}_r +
    \bar{\mathbf{e}}_r - \bar{\mathbf{t}}_r\|_2^2` of L2-normalised
    projections (see :class:`~kgsampler.recommender.transr.TransR`). This
    is the released CKE of KGAT (Wang et al., KDD 2019) and RecBole: the L2
    penalty is on the scored vectors :math:`\mathbf{e}_u, \mathbf{v}_i`
    (KGAT sums it over the batch with weight :math:`10^{-5}`, i.e.
    :math:`\approx 10^{-2}` on the mean at :math:`B = 1024`); their second
    penalty, on the normalised TransR vectors, is a constant and is left
    out. KGAT sizes the KG batch so that an epoch visits as many triples
    as the KG holds, the default of :obj:`kg_batch_ratio` here.

    Args:
        dataset (KGRecDataset): Provides :obj:`num_users`,
            :obj:`num_items`, :obj:`num_entities`, :obj:`num_relations`,
            the triples :obj:`kg` (head, relation, tail) and
            :obj:`train_pos`.
        embedding_dim (int, optional): Size :math:`d` of the user, item and
            entity embeddings. (default: :obj:`64`)
        kg_embedding_dim (int, optional): Size :math:`k` of TransR's
            relation spaces. (default: :obj:`64`)
        reg (float, optional): L2 weight :math:`\lambda` on the batch's
            user and item vectors. (default: :obj:`1e-2`)
        kg_weight (float, optional): Weight :math:`\lambda_{KG}` of the
            TransR loss (:obj:`0`: no KG batch is drawn and the entity
            embeddings learn from the recommendation loss alone).
            (default: :obj:`1.0`)
        kg_batch_ratio (float, optional): KG triples per recommendation row,
            :math:`n = \lceil \textit{kg\_batch\_ratio} \cdot B \rceil`;
            :obj:`None` is :math:`|\mathcal{G}| / |\mathcal{D}_{train}|`
            (KG triples over training interactions). (default: :obj:`None`)
        sparse (bool, optional): Sparse gradients for the user, item,
            entity and relation embeddings, updated by
            :class:`torch.optim.SparseAdam` in the
            :class:`~kgsampler.train.Trainer` (TransR's projections keep
            Adam): a step touches only the batch's rows and its KG
            triples'. (default: :obj:`False`)
    """
    def __init__(self, dataset, embedding_dim: int = 64,
                 kg_embedding_dim: int = 64, reg: float = 1e-2,
                 kg_weight: float = 1.0,
                 kg_batch_ratio: Optional[float] = None,
                 sparse: bool = False):
        super().__init__()
        cls = self.__class__.__name__
        for name in ('num_users', 'num_items', 'num_entities',
                     'num_relations', 'kg', 'train_pos'):
            if not hasattr(dataset, name):
                raise TypeError(f"{cls}: 'dataset' must provide '{name}', as "
                                f"KGRecDataset does (got "
                                f"{type(dataset).__name__})")
        if not isinstance(dataset.train_pos, UserItemCSR):
            raise TypeError(f"{cls}: 'dataset.train_pos' must be a "
                            f"UserItemCSR (got "
                            f"{type(dataset.train_pos).__name__})")
        kg = dataset.kg
        if not isinstance(kg, Tensor) or kg.dim() != 2 or kg.size(1) != 3 \
                or kg.is_floating_point() or kg.dtype == torch.bool:
            raise ValueError(f"{cls}: 'dataset.kg' must be an integer tensor "
                             f"of (head, relation, tail) rows, shape (T, 3) "
                             f"(got {getattr(kg, 'dtype', type(kg))} of "
                             f"shape {tuple(getattr(kg, 'shape', ()))})")
        if kg.size(0) == 0:
            raise ValueError(f"{cls}: 'dataset.kg' holds no triples (got "
                             f"shape (0, 3)); CKE needs a knowledge graph")
        num_users = _positive_int(cls, 'num_users', dataset.num_users)
        num_items = _positive_int(cls, 'num_items', dataset.num_items)
        num_entities = _positive_int(cls, 'num_entities',
                                     dataset.num_entities)
        num_relations = _positive_int(cls, 'num_relations',
                                      dataset.num_relations)
        if num_entities < num_items:
            raise ValueError(f"{cls}: items must be entities 0..num_items-1, "
                             f"so 'num_entities' must be >= num_items="
                             f"{num_items} (got {num_entities})")
        kg = kg.long().cpu()
        lo, hi = kg.min(0).values, kg.max(0).values
        if lo.min() < 0 or hi[0] >= num_entities or hi[2] >= num_entities \
                or hi[1] >= num_relations:
            raise ValueError(f"{cls}: 'dataset.kg' must hold entity ids in "
                             f"[0, {num_entities}) and relation ids in "
                             f"[0, {num_relations}) (got heads in "
                             f"[{lo[0]}, {hi[0]}], relations in [{lo[1]}, "
                             f"{hi[1]}], tails in [{lo[2]}, {hi[2]}])")
        if num_entities * num_relations * num_entities >= 2**63:
            raise ValueError(f"{cls}: num_entities^2 * num_relations must be "
                             f"< 2^63 for the triple keys (got "
                             f"{num_entities}^2 * {num_relations})")
        embedding_dim = _positive_int(cls, 'embedding_dim', embedding_dim)
        kg_embedding_dim = _positive_int(cls, 'kg_embedding_dim',
                                         kg_embedding_dim)
        reg = _non_negative(cls, 'reg', reg)
        if not isinstance(sparse, bool):
            raise TypeError(f"{cls}: 'sparse' must be a bool "
                            f"(got {sparse!r})")
        self.sparse = sparse
        kg_weight = _non_negative(cls, 'kg_weight', kg_weight)
        if kg_batch_ratio is None:
            kg_batch_ratio = kg.size(0) / max(dataset.train_pos.nnz, 1)
        else:
            kg_batch_ratio = _non_negative(cls, 'kg_batch_ratio',
                                           kg_batch_ratio, positive=True)

        self.num_users, self.num_items = num_users, num_items
        self.embedding_dim, self.kg_embedding_dim = (embedding_dim,
                                                     kg_embedding_dim)
        self.reg, self.kg_weight = reg, kg_weight
        self.kg_batch_ratio = float(kg_batch_ratio)
        self.user_emb = torch.nn.Embedding(num_users, embedding_dim,
                                           sparse=sparse)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim,
                                           sparse=sparse)
        self.kge = TransR(num_entities, num_relations, embedding_dim,
                          kg_embedding_dim, sparse=sparse)
        # the triples and their sorted keys (h R + r) E + t, for the filter
        # of corrupted tails; non-persistent: they follow .to()
        self.register_buffer('kg_head', kg[:, 0].contiguous(),
                             persistent=False)
        self.register_buffer('kg_rel', kg[:, 1].contiguous(),
                             persistent=False)
        self.register_buffer('kg_tail', kg[:, 2].contiguous(),
                             persistent=False)
        keys = (kg[:, 0] * num_relations + kg[:, 1]) * num_entities + kg[:, 2]
        self.register_buffer('kg_keys', keys.sort().values, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters: Xavier-normal user and item
        embeddings (as :class:`~kgsampler.recommender.MF`) and
        :meth:`TransR.reset_parameters`."""
        torch.nn.init.xavier_normal_(self.user_emb.weight)
        torch.nn.init.xavier_normal_(self.item_emb.weight)
        self.kge.reset_parameters()

    @property
    def num_entities(self) -> int:
        r"""The number of KG entities (items included)."""
        return self.kge.num_nodes

    @property
    def num_relations(self) -> int:
        r"""The number of KG relations."""
        return self.kge.num_relations

    # -------------------------------------------------------------- checks
    def _check_users_items(self, who: str, users: Tensor, items: Tensor,
                           name: str) -> None:
        if users.dim() != 1 or items.dim() != 2 or \
                items.size(0) != users.size(0):
            raise ValueError(f"CKE.{who}: 'users' must be (B) and '{name}' "
                             f"(B, K) (got shapes {tuple(users.shape)} and "
                             f"{tuple(items.shape)})")

    # ---------------------------------------------------------------- API
    def item_representations(self, items: Tensor) -> Tensor:
        r"""The item vectors :math:`\mathbf{v}_i = \mathbf{e}_i +
        \mathbf{x}_i` (collaborative plus entity embedding; so
        :meth:`similarity` is :math:`\mathbf{v}_i^{\top} \mathbf{v}_j`).

        Args:
            items (torch.Tensor): Item ids, :obj:`torch.long`.

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*, d)`, :math:`d` = :obj:`embedding_dim`
        """
        return self.item_emb(items) + self.kge.node_emb(items)

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Inner products :math:`\mathbf{e}_u^{\top} \mathbf{v}_i` of each
        user with its candidate items.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        self._check_users_items('score', users, items, 'items')
        u = self.user_emb(users)
        return (self.item_representations(items) @
                u.unsqueeze(-1)).squeeze(-1)

    def full_scores(self, users: Tensor) -> Tensor:
        r"""Scores of every item for each user, one matrix product with
        :math:`[\mathbf{v}_0, \dots, \mathbf{v}_{I-1}]`.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **output:** :math:`(B, I)`
        """
        items = self.item_emb.weight + \
            self.kge.node_emb.weight[:self.num_items]
        return self.user_emb(users) @ items.t()

    def sample_kg_batch(self, num_triples: int):
        r"""Draws :obj:`num_triples` KG triples uniformly (with replacement)
        and a uniform corrupted tail :math:`t' \in \mathcal{E}` for each,
        redrawn (up to 4 times, all rows at once) while :math:`(h, r, t')`
        is a KG triple.

        Args:
            num_triples (int): The number :math:`n` of triples.

        Shapes:
            - **output:** a tuple of four :obj:`torch.long` tensors
              :math:`(n)`: heads, relations, tails, corrupted tails
        """
        num_triples = _positive_int('CKE.sample_kg_batch', 'num_triples',
                                    num_triples)
        dev = self.kg_head.device
        idx = torch.randint(self.kg_head.numel(), (num_triples, ),
                            device=dev)
        h, r, t = self.kg_head[idx], self.kg_rel[idx], self.kg_tail[idx]
        E = self.num_entities
        base = (h * self.num_relations + r) * E
        neg = torch.randint(E, (num_triples, ), device=dev)
        keys = self.kg_keys
        for _ in range(_NEG_TRIES):
            k = base + neg
            pos = torch.searchsorted(keys, k).clamp_(max=keys.numel() - 1)
            hit = keys[pos] == k
            if not bool(hit.any()):
                break
            neg = torch.where(hit, torch.randint_like(neg, E), neg)
        return h, r, t, neg

    def kg_loss(self, num_triples: int) -> Tensor:
        r"""TransR's pairwise loss on :obj:`num_triples` triples of
        :meth:`sample_kg_batch`, :math:`-\frac{1}{n}\sum \ln\sigma(f(h, r, t)
        - f(h, r, t'))`.

        Args:
            num_triples (int): The number :math:`n` of triples.

        Shapes:
            - **output:** :math:`()`
        """
        return self.kge.loss(*self.sample_kg_batch(num_triples))

    def loss(self, users: Tensor, pos_items: Tensor,
             neg_items: Tensor) -> Tensor:
        r"""The joint loss of :class:`CKE`: BPR on the batch (mean over its
        :math:`B N` (user, positive, negative) triples), plus
        :obj:`kg_weight` times TransR's loss on
        :math:`\lceil \textit{kg\_batch\_ratio} \cdot B \rceil` KG triples
        drawn here, plus :obj:`reg` times the L2 penalty of the scored
        vectors.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            neg_items (torch.Tensor): :math:`N` negative item ids per row,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **pos_items:** :math:`(B)`
            - **neg_items:** :math:`(B, N)`
            - **output:** :math:`()`
        """
        self._check_users_items('loss', users, neg_items, 'neg_items')
        if pos_items.shape != users.shape:
            raise ValueError(f"CKE.loss: 'pos_items' must have the shape of "
                             f"'users' (got {tuple(pos_items.shape)} and "
                             f"{tuple(users.shape)})")
        u = self.user_emb(users)  # [B, d]
        p = self.item_representations(pos_items)  # [B, d]
        n = self.item_representations(neg_items)  # [B, N, d]
        out = bpr_l2(u, p, n, u, p, n, self.reg)
        if self.kg_weight > 0 and users.numel() > 0:
            num = math.ceil(self.kg_batch_ratio * users.numel())
            out = out + self.kg_weight * self.kg_loss(num)
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, num_entities={self.num_entities}, '
                f'num_relations={self.num_relations}, '
                f'embedding_dim={self.embedding_dim}, '
                f'kg_embedding_dim={self.kg_embedding_dim}'
                + (', sparse=True)' if self.sparse else ')'))
