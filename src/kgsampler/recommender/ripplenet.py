"""RippleNet (Wang et al., CIKM 2018): user preferences propagated over the
knowledge graph from the user's training items."""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterator, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from kgsampler.recommender import base as _base
from kgsampler.recommender.base import Recommender
from kgsampler.utils._checks import positive_int as _positive_int

ITEM_UPDATES = ('replace', 'plus', 'replace_transform', 'plus_transform')




def _non_negative(cls: str, name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or \
            not 0 <= v < math.inf:
        raise ValueError(f"{cls}: '{name}' must be a finite non-negative "
                         f"number (got {v!r})")
    return float(v)


class RippleNet(Recommender):
    r"""RippleNet from the `"RippleNet: Propagating User Preferences on the
    Knowledge Graph for Recommender Systems" <https://arxiv.org/abs/
    1803.03467>`_ paper.

    **Ripple sets.** The KG is used undirected, as in the released code
    (every triple :math:`(h, r, t)` also read as :math:`(t, r, h)`, same
    relation). The hop-1 set of user :math:`u` holds :obj:`num_memory`
    triples drawn uniformly with replacement among the triples whose head is
    one of the user's *training* items (:obj:`dataset.train_pos`; never a
    validation or test item); the hop-:math:`h` set (:math:`h > 1`) is drawn
    the same way among the triples whose head is a tail of the hop-
    :math:`(h-1)` set, as in the released code. All users are drawn at once
    with tensors (a per-user cumulative degree and
    :func:`torch.searchsorted`), and redrawn by :meth:`resample`. A user none
    of whose training items has a KG triple has empty (masked) sets:
    :math:`\mathbf{o}^h = \mathbf{0}` and every item scores 0 (never the
    case on lastfm or ml-1m, where every item has KG triples). The sets are
    persistent buffers, so a saved :meth:`state_dict` restores the sets its
    scores were computed with.

    **Resampling once per epoch.** :meth:`auxiliary_losses` yields no loss
    and redraws the sets; the :class:`~kgsampler.Trainer` runs it after
    every epoch's batches, so each epoch trains on fresh sets and the
    evaluation that follows uses the sets of the next epoch (saved with the
    best state). This hooks the Trainer's own epoch boundary, where a count
    of training steps would have to guess the number of batches per epoch.
    In your own loop, call :meth:`resample` once per epoch.

    **Propagation** (the paper's eq. 4-8 and the released code): with item
    embedding :math:`\mathbf{v}^{1} = \mathbf{v}`, for hops
    :math:`h = 1..H`,

    .. math::
        p_m = \mathrm{softmax}_m\big((\mathbf{v}^{h})^{\top} \mathbf{R}_{r_m}
        \mathbf{h}_m\big), \qquad \mathbf{o}^h = \sum_{m} p_m \mathbf{t}_m,
        \qquad \mathbf{v}^{h+1} = \mathrm{update}(\mathbf{v}^{h},
        \mathbf{o}^h)

    over the :math:`M` triples :math:`(\mathbf{h}_m, \mathbf{R}_{r_m},
    \mathbf{t}_m)` of the hop-:math:`h` set (:math:`\mathbf{R}_r` a
    :math:`d \times d` matrix), where :obj:`item_update` is the released
    code's :obj:`item_update_mode`: :obj:`"replace"` (:math:`\mathbf{o}`),
    :obj:`"plus"` (:math:`\mathbf{v} + \mathbf{o}`),
    :obj:`"replace_transform"` (:math:`\mathbf{o}\mathbf{W}`) or
    :obj:`"plus_transform"` (:math:`(\mathbf{v} + \mathbf{o})\mathbf{W}`,
    the released default). The ranking score is the logit before the
    paper's sigmoid, :math:`\hat{y}_{ui} = (\mathbf{v}^{H+1})^{\top}
    \sum_{h} \mathbf{o}^h` (:obj:`use_all_hops`; else
    :math:`\mathbf{o}^H` alone), with the updated item embedding as in the
    released code.

    **Loss.** BPR on the scores (the trainer's negatives replace the paper's
    labelled log loss), the paper's KG term :math:`-\lambda_{KG}\sum_h
    \mathrm{mean}_m\,\sigma(\mathbf{h}_m^{\top}\mathbf{R}_{r_m}
    \mathbf{t}_m)` over the batch users' ripple sets (the released
    code's :obj:`kge_loss`), and :obj:`reg` times the L2 penalty
    :math:`\frac{1}{B}\sum_b\big(\sum_{h,m}(\|\mathbf{h}_m\|^2 +
    \|\mathbf{t}_m\|^2 + \|\mathbf{R}_{r_m}\|_F^2) + \|\mathbf{v}_i\|^2 +
    \frac{1}{N}\sum_j\|\mathbf{v}_j\|^2\big) / 2` on the embeddings the
    batch uses (the released code's memories, plus the scored items of the
    paper's :math:`\|\mathbf{V}\|^2`).

    **Cost.** :meth:`score` computes :math:`\mathbf{R}\mathbf{h}` once per
    user row, then batched matrix products over :math:`(B, K, M)`;
    :meth:`full_scores` does the same over user chunks of at most
    :math:`2^{22}` (user, item, memory) entries: :math:`O(I H M d)` a user,
    about 15 ms on amazon-book (one thread), where the
    :class:`~kgsampler.Trainer`'s :obj:`valid_users` keeps validation
    affordable.

    Args:
        dataset (KGRecDataset): Provides :obj:`num_users`,
            :obj:`num_items`, :obj:`num_entities`, :obj:`num_relations`,
            :obj:`kg` and :obj:`train_pos`.
        embedding_dim (int, optional): Entity embedding size :math:`d`.
            (default: :obj:`16`, the released code's for movies)
        num_hops (int, optional): Number of hops :math:`H`.
            (default: :obj:`2`)
        num_memory (int, optional): Triples per ripple set :math:`M`.
            (default: :obj:`32`)
        item_update (str, optional): :obj:`"replace"`, :obj:`"plus"`,
            :obj:`"replace_transform"` or :obj:`"plus_transform"`.
            (default: :obj:`"plus_transform"`)
        use_all_hops (bool, optional): Score with :math:`\sum_h
            \mathbf{o}^h` rather than :math:`\mathbf{o}^H`.
            (default: :obj:`True`)
        kge_weight (float, optional): :math:`\lambda_{KG}`.
            (default: :obj:`0.01`, the released code's)
        reg (float, optional): L2 weight. (default: :obj:`1e-4`)
    """
    def __init__(self, dataset, embedding_dim: int = 16, num_hops: int = 2,
                 num_memory: int = 32, item_update: str = 'plus_transform',
                 use_all_hops: bool = True, kge_weight: float = 0.01,
                 reg: float = 1e-4):
        super().__init__()
        cls = self.__class__.__name__
        need = ('num_users', 'num_items', 'num_entities', 'num_relations',
                'kg', 'train_pos')
        missing = [a for a in need if not hasattr(dataset, a)]
        if missing:
            raise TypeError(f"{cls}: 'dataset' must be a KGRecDataset (with "
                            f"{', '.join(need)}) (got "
                            f"{type(dataset).__name__} without "
                            f"{', '.join(missing)})")
        self.embedding_dim = _positive_int(cls, 'embedding_dim', embedding_dim)
        self.num_hops = _positive_int(cls, 'num_hops', num_hops)
        self.num_memory = _positive_int(cls, 'num_memory', num_memory)
        if item_update not in ITEM_UPDATES:
            raise ValueError(f"{cls}: 'item_update' must be one of "
                             f"{ITEM_UPDATES} (got {item_update!r})")
        if not isinstance(use_all_hops, bool):
            raise TypeError(f"{cls}: 'use_all_hops' must be a bool (got "
                            f"{use_all_hops!r})")
        self.item_update, self.use_all_hops = item_update, use_all_hops
        self.kge_weight = _non_negative(cls, 'kge_weight', kge_weight)
        self.reg = _non_negative(cls, 'reg', reg)
        self.num_users = int(dataset.num_users)
        self.num_items = int(dataset.num_items)
        self.num_entities = int(dataset.num_entities)
        self.num_relations = max(int(dataset.num_relations), 1)
        kg, train = dataset.kg, dataset.train_pos
        if (train.num_rows, train.num_cols) != (self.num_users,
                                                self.num_items):
            raise ValueError(f"{cls}: 'dataset.train_pos' must be "
                             f"{self.num_users} x {self.num_items} (got "
                             f"{train.num_rows} x {train.num_cols})")
        d = self.embedding_dim
        self.entity_emb = torch.nn.Embedding(self.num_entities, d)
        self.relation_emb = torch.nn.Embedding(self.num_relations, d * d)
        self.transform = (torch.nn.Linear(d, d, bias=False)
                          if item_update.endswith('transform') else None)
        # undirected KG adjacency, CSR by head (derived: non-persistent)
        kg = kg.cpu()
        head = torch.cat([kg[:, 0], kg[:, 2]])
        rel = torch.cat([kg[:, 1], kg[:, 1]])
        tail = torch.cat([kg[:, 2], kg[:, 0]])
        order = torch.argsort(head * self.num_entities + tail, stable=True)
        head, rel, tail = head[order], rel[order], tail[order]
        ptr = torch.zeros(self.num_entities + 1, dtype=torch.long)
        ptr[1:] = torch.cumsum(torch.bincount(
            head, minlength=self.num_entities), 0)
        self.register_buffer('adj_ptr', ptr, persistent=False)
        self.register_buffer('adj_rel', rel, persistent=False)
        self.register_buffer('adj_tail', tail, persistent=False)
        self.register_buffer('train_indptr', train.indptr.cpu(),
                             persistent=False)
        self.register_buffer('train_items', train.indices.cpu(),
                             persistent=False)
        H, M = self.num_hops, self.num_memory
        zeros = torch.zeros(self.num_users, H, M, dtype=torch.long)
        self.register_buffer('memory_head', zeros)
        self.register_buffer('memory_relation', zeros.clone())
        self.register_buffer('memory_tail', zeros.clone())
        self.register_buffer('memory_mask',
                             torch.zeros(self.num_users, dtype=torch.bool))
        self.reset_parameters()
        self.resample()

    def reset_parameters(self) -> None:
        r"""Resets the entity and relation embeddings and the transform
        (Xavier, as the released code)."""
        d = self.embedding_dim
        torch.nn.init.xavier_uniform_(self.entity_emb.weight)
        torch.nn.init.xavier_uniform_(
            self.relation_emb.weight.view(self.num_relations, d, d))
        if self.transform is not None:
            torch.nn.init.xavier_uniform_(self.transform.weight)

    # -------------------------------------------------------- ripple sets
    @torch.no_grad()
    def resample(self) -> None:
        r"""Redraws every user's ripple sets (see :class:`RippleNet`) with
        the global :mod:`torch` random generator, into the buffers
        :obj:`memory_head`, :obj:`memory_relation`, :obj:`memory_tail`
        :math:`(U, H, M)` and :obj:`memory_mask` :math:`(U)` (users with a
        non-empty hop-1 set)."""
        U, H, M = self.num_users, self.num_hops, self.num_memory
        dev = self.adj_ptr.device
        deg_ent = self.adj_ptr[1:] - self.adj_ptr[:-1]  # [E]
        # hop 1: flat positions over the user's training items' triples
        deg = deg_ent[self.train_items]  # [P]
        cum = torch.cat([deg.new_zeros(1), torch.cumsum(deg, 0)])  # [P + 1]
        lo, hi = cum[self.train_indptr[:-1]], cum[self.train_indptr[1:]]
        total = hi - lo  # [U] triples reachable at hop 1
        valid = total > 0
        self.memory_mask.copy_(valid)
        if not bool(valid.any()):  # no KG triple reachable by anyone
            for buf in (self.memory_head, self.memory_relation,
                        self.memory_tail):
                buf.zero_()
            return
        r = lo.unsqueeze(1) + (torch.rand(U, M, device=dev) *
                               total.unsqueeze(1)).long()
        r = torch.minimum(r, (hi - 1).unsqueeze(1))
        pair = torch.searchsorted(cum, r, right=True) - 1  # [U, M]
        pair = pair.clamp(0, self.train_items.numel() - 1)
        seed = self.train_items[pair]
        edge = self.adj_ptr[seed] + (r - cum[pair])
        keep = valid.unsqueeze(1)
        seed, edge = torch.where(keep, seed, 0), torch.where(keep, edge, 0)
        heads, edges = [seed], [edge]
        for _ in range(1, H):  # hop h: among the tails of hop h - 1
            prev = self.adj_tail[edges[-1]]  # [U, M]
            deg = deg_ent[prev]
            cum = torch.cumsum(deg, 1)
            tot = cum[:, -1:]  # [U, 1]
            r = (torch.rand(U, M, device=dev) * tot).long()
            r = torch.minimum(r, (tot - 1).clamp(min=0))
            slot = torch.searchsorted(cum, r, right=True).clamp(max=M - 1)
            start = (cum - deg).gather(1, slot)
            seed = prev.gather(1, slot)
            edge = self.adj_ptr[seed] + (r - start)
            # no triple from the previous tails (cannot happen on the
            # undirected KG): repeat the previous hop, as the released code
            ok = keep & (tot > 0)
            heads.append(torch.where(ok, seed, heads[-1]))
            edges.append(torch.where(ok, edge, edges[-1]))
        edge = torch.stack(edges, 1)  # [U, H, M]
        self.memory_head.copy_(torch.stack(heads, 1))
        self.memory_relation.copy_(self.adj_rel[edge])
        self.memory_tail.copy_(self.adj_tail[edge])

    def auxiliary_losses(self, batch_size: int) -> Iterator[Tensor]:
        r"""Yields no loss; redraws the ripple sets (:meth:`resample`) when
        the :class:`~kgsampler.Trainer` runs this after each epoch.

        Args:
            batch_size (int): Unused.

        Shapes:
            - **output:** an empty iterator
        """
        self.resample()
        yield from ()

    # -------------------------------------------------------- propagation
    def relation_table(self) -> Tensor:
        r"""Every entity under every relation, :math:`\mathbf{R}_r
        \mathbf{e}` for all :math:`(r, e)`: one batched product, from which
        :math:`\mathbf{R}\mathbf{h}` and :math:`\mathbf{R}\mathbf{t}` of
        the memories are gathered.

        Shapes:
            - **output:** :math:`(|\mathcal{R}|, |\mathcal{E}|, d)`
        """
        d = self.embedding_dim
        R = self.relation_emb.weight.view(self.num_relations, d, d)
        return self.entity_emb.weight.unsqueeze(0) @ R.transpose(1, 2)

    def _use_table(self, num_memories: int) -> bool:
        # the (R, E, d) table costs R E d^2 in one batched product;
        # gathering the memories' R matrices costs num_memories d^2 but is
        # ~10x slower per entry (ml-1m, batch 1024: 64 ms vs 620 ms a step)
        return self.num_relations * self.num_entities <= 64 * num_memories

    def _memories(self, users: Tensor, with_rt: bool = False
                  ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Embeddings of the users' ripple sets: h, Rh, t, Rt (None unless
        asked) and the mask, each (B, H, M, d) but the mask (B)."""
        d = self.embedding_dim
        hi, ri = self.memory_head[users], self.memory_relation[users]
        ti = self.memory_tail[users]
        h, t = self.entity_emb(hi), self.entity_emb(ti)  # [B, H, M, d]
        if self._use_table(hi.numel()):
            table = self.relation_table().view(-1, d)
            Rh = table[ri * self.num_entities + hi]
            Rt = table[ri * self.num_entities + ti] if with_rt else None
        else:
            R = self.relation_emb(ri).view(*ri.shape, d, d)
            Rh = (R * h.unsqueeze(-2)).sum(-1)
            Rt = (R * t.unsqueeze(-2)).sum(-1) if with_rt else None
        return h, Rh, t, Rt, self.memory_mask[users]

    def _update(self, v: Tensor, o: Tensor) -> Tensor:
        if self.item_update == 'replace':
            return o
        if self.item_update == 'plus':
            return v + o
        if self.item_update == 'replace_transform':
            return self.transform(o)
        return self.transform(v + o)

    def _propagate(self, v: Tensor, Rh: Tensor, t: Tensor,
                   mask: Tensor) -> Tuple[Tensor, List[Tensor]]:
        r"""Hop-wise propagation. :obj:`v` :math:`(B, K, d)` or a shared
        :math:`(K, d)`; :obj:`Rh`, :obj:`t` :math:`(B, H, M, d)`;
        :obj:`mask` :math:`(B)`. Returns :math:`\mathbf{v}^{H+1}`
        :math:`(B, K, d)` and the :math:`\mathbf{o}^h` :math:`(B, K, d)`."""
        keep = mask.to(t.dtype).view(-1, 1, 1)
        os = []
        for hop in range(self.num_hops):
            logits = v @ Rh[:, hop].transpose(1, 2)  # [B, K, M]
            p = torch.softmax(logits, dim=-1)
            o = (p @ t[:, hop]) * keep  # [B, K, d]
            v = self._update(v, o)
            os.append(o)
        return v, os

    def _scores(self, users: Tensor, items: Tensor,
                with_rt: bool = False) -> Tuple[Tensor, tuple]:
        h, Rh, t, Rt, mask = self._memories(users, with_rt)
        v, os = self._propagate(self.entity_emb(items), Rh, t, mask)
        y = sum(os) if self.use_all_hops else os[-1]
        return (v * y).sum(-1), (h, Rt, t, mask)

    def hop_outputs(self, users: Tensor, items: Tensor) -> List[Tensor]:
        r"""The responses :math:`\mathbf{o}^h` of each hop.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`H` tensors :math:`(B, K, d)`
        """
        self._check('hop_outputs', users, items, 'items')
        h, Rh, t, _, mask = self._memories(users)
        return self._propagate(self.entity_emb(items), Rh, t, mask)[1]

    def _check(self, who: str, users: Tensor, items: Tensor,
               name: str) -> None:
        if users.dim() != 1 or items.dim() != 2 or \
                items.size(0) != users.size(0):
            raise ValueError(f"RippleNet.{who}: 'users' must be (B) and "
                             f"'{name}' (B, K) (got shapes "
                             f"{tuple(users.shape)} and "
                             f"{tuple(items.shape)})")

    # ---------------------------------------------------------------- API
    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""The logits :math:`(\mathbf{v}^{H+1}_i)^{\top}\sum_h
        \mathbf{o}^h_{ui}` of each user with its candidate items.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        self._check('score', users, items, 'items')
        return self._scores(users, items)[0]

    def full_scores(self, users: Tensor) -> Tensor:
        r"""Scores of every item for each user, over user chunks; the first
        hop's attention logits are one product of the shared item table with
        the chunk's memories.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **output:** :math:`(B, I)`
        """
        if users.dim() != 1:
            raise ValueError(f"RippleNet.full_scores: 'users' must be (B) "
                             f"(got shape {tuple(users.shape)})")
        I = self.num_items  # noqa: E741
        v0 = self.entity_emb.weight[:I]  # [I, d]
        width = max(self.num_memory, self.embedding_dim)
        step = max(1, _base.FULL_SCORES_CHUNK // max(I * width, 1))
        # one preallocated output: a list of small rows between the chunks'
        # large temporaries fragments the heap (see NFM.full_scores)
        out = v0.new_empty((users.numel(), I))
        for start in range(0, users.numel(), step):
            u = users[start:start + step]
            b = u.numel()
            _, Rh, t, _, mask = self._memories(u)  # [b, H, M, d]
            keep = mask.to(t.dtype).view(-1, 1, 1)
            M = Rh.size(2)
            # hop 1 against the shared item table: one (I, d) x (d, b M)
            # product rather than a batched one over a broadcast copy
            # (1.7-1.8x faster on amazon-book, 24-28 against 14-15 ms a
            # user in one run; equal results)
            logits = (v0 @ Rh[:, 0].reshape(b * M, -1).t()).view(I, b, M)
            p = torch.softmax(logits, dim=-1).transpose(0, 1)  # [b, I, M]
            o = torch.bmm(p, t[:, 0]) * keep  # [b, I, d]
            v, y = self._update(v0, o), o
            for hop in range(1, self.num_hops):
                p = torch.softmax(v @ Rh[:, hop].transpose(1, 2), dim=-1)
                o = (p @ t[:, hop]) * keep
                v = self._update(v, o)
                y = y + o if self.use_all_hops else o
            out[start:start + b] = (v * y).sum(-1)
        return out

    def item_representations(self, items: Tensor) -> Tensor:
        r"""The items' entity embeddings :math:`\mathbf{v}_i` (before any
        user's propagation).

        Args:
            items (torch.Tensor): Item ids, :obj:`torch.long`.

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*, d)`
        """
        return self.entity_emb(items)

    def loss(self, users: Tensor, pos_items: Tensor,
             neg_items: Tensor) -> Tensor:
        r"""BPR loss plus the KG term and L2, as in :class:`RippleNet`.

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
        self._check('loss', users, neg_items, 'neg_items')
        if pos_items.shape != users.shape:
            raise ValueError(f"RippleNet.loss: 'pos_items' must have the "
                             f"shape of 'users' (got "
                             f"{tuple(pos_items.shape)} and "
                             f"{tuple(users.shape)})")
        items = torch.cat([pos_items.view(-1, 1), neg_items], dim=1)
        out, (h, Rt, t, mask) = self._scores(users, items,
                                             with_rt=self.kge_weight > 0)
        loss = -F.logsigmoid(out[:, :1] - out[:, 1:]).mean()
        if self.kge_weight > 0:
            hRt = torch.sigmoid((h * Rt).sum(-1))  # [B, H, M]
            keep = mask.to(hRt.dtype)
            per_hop = (hRt.mean(-1) * keep.unsqueeze(1)).sum(0) / \
                keep.sum().clamp(min=1)  # [H]
            loss = loss - self.kge_weight * per_hop.sum()
        if self.reg > 0:
            v = self.entity_emb(items)  # [B, 1 + N, d]
            r2 = self.relation_emb.weight.pow(2).sum(-1)  # [R], ||R_r||_F^2
            mem = (h.pow(2).sum(-1) + t.pow(2).sum(-1) +
                   r2[self.memory_relation[users]]).sum((1, 2))  # [B]
            l2 = (mem + v[:, 0].pow(2).sum(-1) +
                  v[:, 1:].pow(2).sum(-1).mean(-1)).mean() / 2
            loss = loss + self.reg * l2
        return loss

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, num_entities={self.num_entities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_hops={self.num_hops}, num_memory={self.num_memory}, '
                f"item_update='{self.item_update}')")
