r"""Graph views of a :class:`~kgsampler.data.KGRecDataset`: the
collaborative knowledge graph as :class:`torch_geometric.data.HeteroData`
and as one homogeneous :obj:`edge_index`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import coalesce, remove_self_loops

if TYPE_CHECKING:  # pragma: no cover
    from kgsampler.data.dataset import KGRecDataset

__all__ = ['build_hetero_data', 'HomogeneousKG', 'to_homogeneous_kg']


def _check_dataset(who: str, dataset) -> None:
    from kgsampler.data.dataset import KGRecDataset
    if not isinstance(dataset, KGRecDataset):
        raise TypeError(f"{who}: 'dataset' must be a KGRecDataset "
                        f"(got {type(dataset).__name__})")


def build_hetero_data(dataset: 'KGRecDataset') -> HeteroData:
    r"""Builds the collaborative knowledge graph as a
    :class:`~torch_geometric.data.HeteroData`.

    Node types (local ids start at 0 in every type):

    * :obj:`'user'`: :obj:`num_users` nodes;
    * :obj:`'item'`: :obj:`num_items` nodes, item :obj:`i` = entity
      :obj:`i`;
    * :obj:`'entity'`: the :obj:`num_entities - num_items` non-item
      entities, entity :obj:`e` has local id :obj:`e - num_items` (the type
      is left out when there are none).

    Edge types:

    * :obj:`('user', 'interacts', 'item')` from the *training* interactions
      only (never validation or test), and its reverse
      :obj:`('item', 'rev_interacts', 'user')`;
    * the KG triples, grouped by the node types of head and tail, into
      :obj:`('item', 'kg', 'entity')`, :obj:`('entity', 'kg', 'item')`,
      :obj:`('item', 'kg', 'item')` and :obj:`('entity', 'kg', 'entity')`
      (those that occur), each with :obj:`edge_index` (local ids) and
      :obj:`relation` (the relation id of every edge), plus the reverses
      :obj:`(tail_type, 'rev_kg', head_type)` with the same relation ids.

    The graph-level attribute :obj:`num_relations` holds the number of
    relation ids.

    Args:
        dataset (KGRecDataset): The dataset.
    """
    _check_dataset('build_hetero_data', dataset)
    num_items = dataset.num_items
    num_other = dataset.num_entities - num_items
    data = HeteroData()
    data.num_relations = dataset.num_relations
    data['user'].num_nodes = dataset.num_users
    data['item'].num_nodes = num_items
    if num_other > 0:
        data['entity'].num_nodes = num_other

    user = dataset.train_pos.row_ids()
    item = dataset.train_pos.indices
    data['user', 'interacts', 'item'].edge_index = torch.stack([user, item])
    data['item', 'rev_interacts', 'user'].edge_index = torch.stack(
        [item, user])

    head, rel, tail = dataset.kg.unbind(dim=1)
    head_is_item, tail_is_item = head < num_items, tail < num_items
    for h_item in (True, False):
        for t_item in (True, False):
            mask = (head_is_item == h_item) & (tail_is_item == t_item)
            if not bool(mask.any()):
                continue
            src_type = 'item' if h_item else 'entity'
            dst_type = 'item' if t_item else 'entity'
            src = head[mask] - (0 if h_item else num_items)
            dst = tail[mask] - (0 if t_item else num_items)
            store = data[src_type, 'kg', dst_type]
            store.edge_index = torch.stack([src, dst])
            store.relation = rel[mask]
            rev = data[dst_type, 'rev_kg', src_type]
            rev.edge_index = torch.stack([dst, src])
            rev.relation = rel[mask]
    return data


@dataclass
class HomogeneousKG:
    r"""The collaborative knowledge graph as one homogeneous, undirected
    graph, the input of graph policy networks (e.g.
    :class:`~torch_geometric.nn.conv.SAGEConv`).

    Node-id layout: users first, then all entities (items first)::

        [0, U)                  users, user u -> node u
        [U, U + I)              items, item i -> node U + i
        [U + I, U + E)          other entities, entity e -> node U + e

    with :math:`U` = :obj:`num_users`, :math:`I` = :obj:`num_items` and
    :math:`E` = :obj:`num_entities` (items included).

    Args:
        edge_index (torch.Tensor): Coalesced (sorted, duplicate-free) edges
            without self-loops; every edge is present in both directions.
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        num_entities (int): :math:`E`.

    Shapes:
        - **edge_index:** :math:`(2, M)`
    """
    edge_index: Tensor
    num_users: int
    num_items: int
    num_entities: int

    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_entities

    @property
    def item_offset(self) -> int:
        r"""Node id of item (and entity) :obj:`0`."""
        return self.num_users

    def item_to_node(self, items: Tensor) -> Tensor:
        r"""Node ids of item (or entity) ids: :math:`U + i`.

        Args:
            items (torch.Tensor): Item (or entity) ids.

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*)`
        """
        return items + self.num_users

    def node_to_item(self, nodes: Tensor) -> Tensor:
        r"""Item (or entity) ids of node ids :math:`\geq U`: :math:`n - U`.

        Args:
            nodes (torch.Tensor): Node ids, each :math:`\geq U`.

        Shapes:
            - **nodes:** :math:`(*)`
            - **output:** :math:`(*)`
        """
        return nodes - self.num_users

    def node_type(self) -> Tensor:
        r"""Type of every node: :obj:`0` user, :obj:`1` item, :obj:`2`
        other entity, as :obj:`torch.long`.

        Shapes:
            - **output:** :math:`(U + E)`
        """
        out = torch.full((self.num_nodes, ), 2, dtype=torch.long,
                         device=self.edge_index.device)
        out[:self.num_users] = 0
        out[self.num_users:self.num_users + self.num_items] = 1
        return out

    def to(self, device) -> 'HomogeneousKG':
        return HomogeneousKG(self.edge_index.to(device), self.num_users,
                             self.num_items, self.num_entities)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'num_edges={self.edge_index.size(1)}, '
                f'users={self.num_users}, items={self.num_items}, '
                f'entities={self.num_entities})')


def to_homogeneous_kg(dataset: 'KGRecDataset') -> HomogeneousKG:
    r"""Merges training interactions and KG triples into one homogeneous
    graph (relation types dropped), see :class:`HomogeneousKG` for the
    node-id layout. Both directions of every interaction and triple are
    included; self-loops and duplicates are removed. Validation and test
    interactions are never included.

    Args:
        dataset (KGRecDataset): The dataset.
    """
    _check_dataset('to_homogeneous_kg', dataset)
    num_users = dataset.num_users
    user = dataset.train_pos.row_ids()
    item = dataset.train_pos.indices + num_users
    head = dataset.kg[:, 0] + num_users
    tail = dataset.kg[:, 2] + num_users
    src = torch.cat([user, item, head, tail])
    dst = torch.cat([item, user, tail, head])
    num_nodes = num_users + dataset.num_entities
    edge_index, _ = remove_self_loops(torch.stack([src, dst]))
    edge_index = coalesce(edge_index, num_nodes=num_nodes)
    return HomogeneousKG(edge_index, num_users, dataset.num_items,
                         dataset.num_entities)
