r"""Random-walk negatives over the item knowledge graph (KGPolicy without the
policy: every hop uniform)."""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler import _kgpolicy_graph as kg_graph
from kgsampler.sampler import _kgpolicy_attention as kg_attention
from kgsampler.sampler.base import Sampler, SamplerOutput


class RandomWalk(Sampler):
    r"""Random-walk negatives over the collaborative knowledge graph: from
    the positive item :math:`e_0 = i`, :math:`T` steps of item
    :math:`\to` neighbour :math:`e'` (a KG entity or item; also another user
    with :obj:`user_hops`) :math:`\to` item :math:`e_{t+1}`, each hop uniform
    among the allowed neighbours; the last item is the negative. It is
    :class:`KGPolicy`'s exploration with uniform instead of learned
    attention (no pruning, no random items, no recommender), the
    non-learned baseline of the knowledge-graph samplers.

    A hop never goes back to a node of its path, and an item hop never lands
    on a training positive of the user: the neighbour is drawn uniformly,
    and redrawn (up to :obj:`num_tries` draws) while it is one of those. A
    step whose hop finds no allowed neighbour (an item without KG
    neighbours, or only path nodes and positives within the draws) leaves
    the walk where it is (:obj:`dead_end_rate`, :obj:`no_neighbour_rate`);
    a walk that never left the positive returns a uniform negative instead
    (:obj:`fallback_rate`). :obj:`SamplerOutput.paths` holds the walks in
    the homogeneous node ids of :class:`KGPolicy` (users first, entity
    :obj:`e` at :obj:`num_users + e`), :obj:`-1` for a hop that did not
    happen; :func:`~kgsampler.sampler.format_paths` prints them.

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        edge_index (torch.Tensor): The collaborative KG in the homogeneous
            layout (see :func:`~kgsampler.sampler.KGPolicy.from_dataset`),
            both directions, :math:`(2, E)`.
        num_entities (int): Entities, items included.
        steps (int, optional): Exploration steps :math:`T`. (default: :obj:`2`)
        user_hops (bool, optional): Let the first hop of a step go to users
            (item -> user -> item). (default: :obj:`False`)
        num_tries (int, optional): Uniform draws per hop before it counts as
            a dead end. (default: :obj:`8`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    _COUNTERS = ('num_steps', 'num_no_neighbour', 'num_dead_end')

    def __init__(self, train_pos: UserItemCSR, edge_index: Tensor,
                 num_entities: int, steps: int = 2, user_hops: bool = False,
                 num_tries: int = 8, **kwargs):
        super().__init__(train_pos, **kwargs)
        for name, v in (('steps', steps), ('num_tries', num_tries),
                        ('num_entities', num_entities)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"RandomWalk: '{name}' must be a positive "
                                 f"int (got {v!r})")
        if not isinstance(user_hops, bool):
            raise TypeError(f"RandomWalk: 'user_hops' must be a bool (got "
                            f"{user_hops!r})")
        if num_entities < self.num_items:
            raise ValueError(f"RandomWalk: 'num_entities' must count the "
                             f"items too (got {num_entities} < "
                             f"{self.num_items} items)")
        U, I = self.num_users, self.num_items
        num_nodes = U + num_entities
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or \
                edge_index.size(0) != 2 or edge_index.is_floating_point():
            raise ValueError(f"RandomWalk: 'edge_index' must be an integer "
                             f"[2, E] tensor (got "
                             f"{getattr(edge_index, 'dtype', None)} of shape "
                             f"{tuple(getattr(edge_index, 'shape', ()))})")
        edge_index = edge_index.long().to(train_pos.device)
        if edge_index.numel() > 0 and (int(edge_index.min()) < 0 or int(
                edge_index.max()) >= num_nodes):
            raise ValueError(f"RandomWalk: 'edge_index' must hold node ids in "
                             f"[0, {num_nodes}) (users first, then entities)")
        self.steps, self.user_hops, self.num_tries = steps, user_hops, \
            num_tries
        self.num_entities, self.num_nodes = num_entities, num_nodes
        src, dst = edge_index
        # first hop: item -> KG neighbour (and users with user_hops)
        first = (src >= U) & (src < U + I)
        if not user_hops:
            first &= dst >= U
        adj1 = UserItemCSR.from_pairs(src[first] - U, dst[first], I,
                                      num_nodes)
        # second hop: any node -> item
        second = (dst >= U) & (dst < U + I)
        adj2 = UserItemCSR.from_pairs(src[second], dst[second], num_nodes,
                                      num_nodes)
        self._ptr1, self._col1 = adj1.indptr, adj1.indices
        self._ptr2, self._col2 = adj2.indptr, adj2.indices
        self.reset_stats()

    @classmethod
    def from_dataset(cls, dataset, scorer=None,
                     track_false_negatives: bool = True,
                     **kwargs) -> 'RandomWalk':
        r"""Builds the sampler on a :class:`~kgsampler.data.KGRecDataset`'s
        collaborative KG (training interactions plus the item KG).

        Args:
            dataset (KGRecDataset): The dataset.
            scorer (Scorer, optional): Ignored (the walk needs no
                recommender); accepted so that every sampler builds the same
                way.
            track_false_negatives (bool, optional): Count negatives that are
                validation positives. (default: :obj:`True`)
            **kwargs (optional): Arguments of :class:`RandomWalk`.
        """
        kg_graph.require_kg(f'{cls.__name__}.from_dataset', dataset)
        edge_index, _, _ = kg_graph.collaborative_graph(dataset)
        cls._monitor_kwargs(dataset, track_false_negatives, kwargs)
        return cls(dataset.train_pos, edge_index, int(dataset.num_entities),
                   **kwargs)

    def to(self, device) -> 'RandomWalk':
        super().to(device)
        device = self.train_pos.device  # resolved ("auto")
        for name in ('_ptr1', '_col1', '_ptr2', '_col2', '_counts'):
            setattr(self, name, getattr(self, name).to(device))
        return self

    # ------------------------------------------------------------ sampling
    def _hop(self, ptr: Tensor, col: Tensor, rows: Tensor,
             allowed: Callable[[Tensor], Tensor]) -> Tensor:
        r"""A uniform neighbour :obj:`col[ptr[r]:ptr[r + 1]]` of every row
        :obj:`r` of :obj:`rows` that passes :obj:`allowed`, redrawn up to
        :obj:`num_tries` times; :obj:`-1` where none was found (or the row
        has no neighbour). Shapes: **rows** :math:`(R)`, output
        :math:`(R)`."""
        start = ptr[rows]
        deg = ptr[rows + 1] - start
        out = torch.full_like(rows, -1)
        todo = deg > 0
        for _ in range(self.num_tries):
            if not bool(todo.any()):
                break
            pick = start + (torch.rand(rows.shape, device=rows.device) *
                            deg).long().clamp_(max=deg.clamp(min=1) - 1)
            cand = col[pick.clamp(max=max(col.numel() - 1, 0))]
            ok = todo & allowed(cand)
            out = torch.where(ok, cand, out)
            todo &= ~ok
        return out

    @torch.no_grad()
    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        U, I, T = self.num_users, self.num_items, self.steps
        B, N = users.numel(), num_neg
        u = users.repeat_interleave(N)
        cur = pos_items.repeat_interleave(N) + U
        history = cur.view(-1, 1)
        path = [cur]
        moved = torch.zeros_like(u, dtype=torch.bool)
        counts = torch.zeros(3, dtype=torch.long, device=u.device)
        for _ in range(T):
            mid = self._hop(self._ptr1, self._col1, cur - U,
                            lambda c: ~kg_attention.in_history(c.view(-1, 1),
                                                     history).view(-1))
            has1 = mid >= 0
            nxt = torch.full_like(cur, -1)
            if bool(has1.any()):
                idx = has1.nonzero().view(-1)
                hist2 = torch.cat([history[idx], mid[idx].view(-1, 1)], 1)
                u2 = u[idx]

                def item_ok(c, hist2=hist2, u2=u2):
                    return ~kg_attention.in_history(c.view(-1, 1), hist2).view(-1) & \
                        ~self.is_pos(u2, (c - U).clamp(0, I - 1))
                nxt[idx] = self._hop(self._ptr2, self._col2, mid[idx],
                                     item_ok)
            ok = nxt >= 0
            deg1 = self._ptr1[cur - U + 1] - self._ptr1[cur - U]
            counts += torch.stack([torch.full_like(counts[0], ok.numel()),
                                   (deg1 == 0).sum(), (~ok).sum()])
            path += [mid, nxt]
            history = torch.cat([history, mid.view(-1, 1), nxt.view(-1, 1)],
                                1)
            cur = torch.where(ok, nxt, cur)
            moved |= ok
        neg = (cur - U).view(B, N).clone()
        fallback = ~moved.view(B, N)
        self._fill_uniform(users.view(-1, 1).expand(B, N), neg, fallback)
        self._counts += counts
        paths = torch.stack(path, 1).view(B, N, 2 * T + 1)
        return SamplerOutput(neg, fallback=fallback, paths=paths)

    # ------------------------------------------------------------ reporting
    def reset_stats(self) -> None:
        super().reset_stats()
        dev = self._deg.device
        self._counts = torch.zeros(len(self._COUNTERS), dtype=torch.long,
                                   device=dev)

    def summary_stats(self) -> Dict[str, float]:
        r"""The :class:`Sampler` counters plus :obj:`no_neighbour_rate` (steps
        from an item without first-hop neighbours) and :obj:`dead_end_rate`
        (steps that found no allowed item and stayed in place)."""
        out = super().summary_stats()
        steps, none, dead = self._counts.tolist()
        out.update({'num_steps': steps,
                    'no_neighbour_rate': none / max(steps, 1),
                    'dead_end_rate': dead / max(steps, 1)})
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'steps={self.steps}, user_hops={self.user_hops})')
