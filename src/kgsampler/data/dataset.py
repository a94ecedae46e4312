r"""The recommendation dataset with a knowledge graph:
:class:`KGRecDataset`."""
from __future__ import annotations

import numbers
import warnings
from typing import Any, Dict, List, Optional

import numpy as np

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from kgsampler.data.csr import UserItemCSR
from kgsampler.data.graph import (HomogeneousKG, build_hetero_data,
                                  to_homogeneous_kg)
from kgsampler.data.kgat import DEFAULT_MAX_IDS, read_kgat
from kgsampler.data.split import split_per_user

__all__ = ['KGRecDataset']


def _check_index_matrix(who: str, name: str, t: Any, cols: int) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{who}: '{name}' must be a torch.Tensor "
                        f"(got {type(t).__name__})")
    if t.dtype != torch.long:
        raise TypeError(f"{who}: '{name}' must be torch.long (got {t.dtype})")
    if t.dim() != 2 or t.size(1) != cols:
        raise ValueError(f"{who}: '{name}' must have shape [N, {cols}] "
                         f"(got {tuple(t.shape)})")
    if t.numel() > 0 and int(t.min()) < 0:
        raise ValueError(f"{who}: '{name}' must hold non-negative ids "
                         f"(got minimum {int(t.min())})")
    return t.cpu()


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(
        v, (bool, np.bool_))


def _check_count(who: str, name: str, value: Optional[int], needed: int,
                 what: str, max_ids: int) -> int:
    if value is not None:
        if not _is_int(value) or value < 0:
            raise ValueError(f"{who}: '{name}' must be a non-negative int "
                             f"(got {value!r})")
        value = int(value)
        if value < needed:
            raise ValueError(f"{who}: '{name}' must cover {what} (needs at "
                             f"least {needed}, got {value})")
    count = needed if value is None else value
    if count > max_ids:
        raise ValueError(f"{who}: '{name}' would be {count:,}, more than "
                         f"max_ids={max_ids:,} (a guard against ids that "
                         f"would make a model allocate absurd tables; pass "
                         f"a larger max_ids if the data is that large)")
    return count


def _max(t: Tensor) -> int:
    return int(t.max()) if t.numel() > 0 else -1


def _dedup_rows(who: str, name: str, rows: Tensor,
                sizes: List[int]) -> Tensor:
    r"""Sorted unique rows of an id matrix whose column :obj:`j` lies in
    :obj:`[0, sizes[j])`; warns with the number of duplicates removed."""
    total = 1
    for s in sizes:
        total *= max(s, 1)
    if total < 2**62:  # encode every row as one int64 key
        key = torch.zeros(rows.size(0), dtype=torch.long)
        for j, s in enumerate(sizes):
            key = key * max(s, 1) + rows[:, j]
        if bool((key[1:] > key[:-1]).all()):  # already sorted and unique
            return rows
        key = torch.unique(key)
        out = torch.empty(key.numel(), len(sizes), dtype=torch.long)
        for j in range(len(sizes) - 1, -1, -1):
            out[:, j] = key % max(sizes[j], 1)
            key = key // max(sizes[j], 1)
    else:  # pragma: no cover (ids beyond int64 keys)
        out = torch.unique(rows, dim=0)
    if out.size(0) < rows.size(0):
        warnings.warn(f"{who}: removed {rows.size(0) - out.size(0)} "
                      f"duplicate rows from '{name}'", UserWarning,
                      stacklevel=3)
    return out


def _csr_from_sorted(pairs: Tensor, num_users: int,
                     num_items: int) -> UserItemCSR:
    r"""CSR of sorted, duplicate-free (user, item) pairs."""
    indptr = torch.zeros(num_users + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(pairs[:, 0],
                                             minlength=num_users), 0)
    return UserItemCSR(indptr, pairs[:, 1].contiguous(), num_items)


class KGRecDataset:
    r"""Implicit-feedback interactions plus a knowledge graph (KG) over the
    items, split into train, validation and test.

    Items are KG entities: item :obj:`i` is entity :obj:`i`, entity ids
    :obj:`num_items..num_entities-1` are the other KG entities.

    The validation set is carved out of the training pairs per user (see
    :func:`~kgsampler.data.split.split_per_user`): user :math:`u` with
    :math:`n_u` training items gives
    :math:`\min(\lfloor \textit{valid\_ratio} \cdot n_u + 0.5 \rfloor,
    n_u - 1)` of them to :attr:`valid_pos`, chosen by a
    :class:`torch.Generator` seeded with :obj:`seed`, so every user keeps at
    least one training item and the split is reproducible.

    Args:
        train_pairs (torch.Tensor): Training (user, item) pairs,
            :obj:`torch.long`.
        test_pairs (torch.Tensor): Test (user, item) pairs,
            :obj:`torch.long`.
        kg (torch.Tensor): KG triples (head, relation, tail),
            :obj:`torch.long`; may be empty.
        num_users (int, optional): Number of users; inferred as the largest
            user id plus one when :obj:`None`. (default: :obj:`None`)
        num_items (int, optional): Number of items; inferred from train and
            test when :obj:`None`. (default: :obj:`None`)
        num_entities (int, optional): Number of entities, items included;
            inferred from :obj:`num_items`, the KG and :obj:`entity_names`
            when :obj:`None`. (default: :obj:`None`)
        num_relations (int, optional): Number of relations; inferred from the
            KG and :obj:`relation_names` when :obj:`None`.
            (default: :obj:`None`)
        valid_ratio (float, optional): Share of every user's training items
            moved to validation, in :math:`[0, 1)`. (default: :obj:`0.1`)
        seed (int, optional): Seed of the validation split.
            (default: :obj:`2020`)
        name (str, optional): Dataset name. (default: :obj:`'custom'`)
        relation_names (List[str], optional): Name of every relation id
            (:obj:`None` entries allowed). (default: :obj:`None`)
        entity_names (List[str], optional): Name of every entity id; may be
            shorter than :obj:`num_entities`. (default: :obj:`None`)
        max_ids (int, optional): Upper bound on :obj:`num_users`,
            :obj:`num_items`, :obj:`num_entities` and :obj:`num_relations`,
            checked before anything of that size is allocated.
            (default: :obj:`DEFAULT_MAX_IDS`, ten million)

    Shapes:
        - **train_pairs, test_pairs:** :math:`(E, 2)`
        - **kg:** :math:`(T, 3)`

    Attributes:
        train_pos, valid_pos, test_pos (UserItemCSR): The splits, each with
            :obj:`num_users` rows and :obj:`num_items` columns.
        kg (torch.Tensor): The duplicate-free triples sorted by (head,
            relation, tail), :math:`(T, 3)`.
        exposed (UserItemCSR, optional): Diagnostics some datasets provide
            (exposed-but-not-chosen items of
            :func:`~kgsampler.data.make_synthetic`), else :obj:`None`.
    """
    def __init__(
        self,
        train_pairs: Tensor,
        test_pairs: Tensor,
        kg: Tensor,
        num_users: Optional[int] = None,
        num_items: Optional[int] = None,
        num_entities: Optional[int] = None,
        num_relations: Optional[int] = None,
        valid_ratio: float = 0.1,
        seed: int = 2020,
        name: str = 'custom',
        relation_names: Optional[List[Optional[str]]] = None,
        entity_names: Optional[List[Optional[str]]] = None,
        max_ids: int = DEFAULT_MAX_IDS,
    ):
        who = self.__class__.__name__
        if not _is_int(max_ids) or max_ids < 1:
            raise ValueError(f"{who}: 'max_ids' must be a positive int "
                             f"(got {max_ids!r})")
        max_ids = int(max_ids)
        train_pairs = _check_index_matrix(who, 'train_pairs', train_pairs, 2)
        test_pairs = _check_index_matrix(who, 'test_pairs', test_pairs, 2)
        kg = _check_index_matrix(who, 'kg', kg, 3)
        if train_pairs.size(0) == 0:
            raise ValueError(f"{who}: 'train_pairs' must not be empty (got "
                             f"shape {tuple(train_pairs.shape)})")
        if isinstance(valid_ratio, (bool, np.bool_)) or not isinstance(
                valid_ratio, numbers.Real) or not 0.0 <= valid_ratio < 1.0:
            raise ValueError(f"{who}: 'valid_ratio' must be a float in "
                             f"[0, 1) (got {valid_ratio!r})")
        if not _is_int(seed):
            raise TypeError(f"{who}: 'seed' must be an int (got {seed!r})")
        seed = int(seed)
        if not isinstance(name, str):
            raise TypeError(f"{who}: 'name' must be a str (got "
                            f"{type(name).__name__})")
        for arg, names in (('relation_names', relation_names),
                           ('entity_names', entity_names)):
            if names is not None and (not isinstance(names, (list, tuple))
                                      or not all(n is None or isinstance(
                                          n, str) for n in names)):
                raise TypeError(f"{who}: '{arg}' must be a list of str "
                                f"(got {type(names).__name__})")

        pairs = torch.cat([train_pairs, test_pairs])
        num_users = _check_count(who, 'num_users', num_users,
                                 _max(pairs[:, 0]) + 1, 'every user id',
                                 max_ids)
        num_items = _check_count(who, 'num_items', num_items,
                                 _max(pairs[:, 1]) + 1, 'every item id',
                                 max_ids)
        needed = max(num_items, _max(kg[:, [0, 2]]) + 1,
                     len(entity_names or []))
        num_entities = _check_count(who, 'num_entities', num_entities,
                                    needed, 'the items, every KG entity id '
                                    'and entity_names', max_ids)
        num_relations = _check_count(
            who, 'num_relations', num_relations,
            max(_max(kg[:, 1]) + 1, len(relation_names or [])),
            'every relation id and relation_names', max_ids)

        ui = [num_users, num_items]
        train_pairs = _dedup_rows(who, 'train_pairs', train_pairs, ui)
        test_pairs = _dedup_rows(who, 'test_pairs', test_pairs, ui)
        kg = _dedup_rows(who, 'kg', kg,
                         [num_entities, num_relations, num_entities])

        self.name = name
        self.num_users = num_users
        self.num_items = num_items
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.valid_ratio = float(valid_ratio)
        self.seed = seed
        self.relation_names = (list(relation_names)
                               if relation_names is not None else None)
        self.entity_names = (list(entity_names)
                             if entity_names is not None else None)
        self.kg = kg
        self.exposed: Optional[UserItemCSR] = None

        train = _csr_from_sorted(train_pairs, num_users, num_items)
        self.test_pos = _csr_from_sorted(test_pairs, num_users, num_items)
        train_keys, test_keys = train.keys(), self.test_pos.keys()
        pos = torch.searchsorted(train_keys, test_keys).clamp(
            max=max(train_keys.numel() - 1, 0))
        overlap = int((train_keys[pos] == test_keys).sum())
        if overlap > 0:
            warnings.warn(f"{who}: {overlap} (user, item) pairs are both in "
                          f"train and test (kept in both)", UserWarning,
                          stacklevel=2)
        gen = torch.Generator().manual_seed(seed)
        split = split_per_user(train, self.valid_ratio, gen)
        self.train_pos = split.keep
        self.valid_pos = split.held_out
        self._data: Optional[HeteroData] = None
        self._homo: Optional[HomogeneousKG] = None

    @classmethod
    def from_recbole(cls, path: str, name: Optional[str] = None,
                     rating_threshold: Optional[float] = None,
                     test_ratio: float = 0.2, valid_ratio: float = 0.1,
                     seed: int = 2020) -> 'KGRecDataset':
        r"""Reads RecBole atomic files (:obj:`.inter`, optional :obj:`.kg`
        and :obj:`.link`); see :func:`~kgsampler.data.read_recbole` for the
        format, the rating rule and the splits.

        Args:
            path (str): The dataset folder.
            name (str, optional): The files' stem; the folder's name when
                :obj:`None`. (default: :obj:`None`)
            rating_threshold (float, optional): Minimum rating of a
                positive; :obj:`None` keeps every row. (default: :obj:`None`)
            test_ratio (float, optional): Per-user test share.
                (default: :obj:`0.2`)
            valid_ratio (float, optional): Per-user validation share of the
                training positives. (default: :obj:`0.1`)
            seed (int, optional): Seed of both splits. (default: :obj:`2020`)
        """
        from kgsampler.data.recbole import read_recbole
        return read_recbole(path, name=name,
                            rating_threshold=rating_threshold,
                            test_ratio=test_ratio, valid_ratio=valid_ratio,
                            seed=seed)

    @classmethod
    def from_kgat(cls, path: str, valid_ratio: float = 0.1, seed: int = 2020,
                  name: Optional[str] = None,
                  max_ids: int = DEFAULT_MAX_IDS) -> 'KGRecDataset':
        r"""Reads a folder in KGAT format (see :func:`~kgsampler.data.
        read_kgat` for the format and its checks).

        A user whose training positives (after the validation split) are
        all the items could never be given a negative: such a user is an
        error naming :obj:`train.txt` and the user's line.

        Args:
            path (str): Folder with :obj:`train.txt`, :obj:`test.txt`,
                :obj:`kg_final.txt` and optionally :obj:`relation_list.txt`
                and :obj:`entity_list.txt`.
            valid_ratio (float, optional): See :class:`KGRecDataset`.
                (default: :obj:`0.1`)
            seed (int, optional): Seed of the validation split.
                (default: :obj:`2020`)
            name (str, optional): Dataset name; the folder name when
                :obj:`None`. (default: :obj:`None`)
            max_ids (int, optional): Every id must be below this bound,
                checked (with the file and line of the first offending id)
                before anything of that size is allocated.
                (default: :obj:`DEFAULT_MAX_IDS`, ten million)
        """
        kwargs = _kgat_kwargs(read_kgat(path, max_ids=max_ids))
        if name is not None:
            kwargs['name'] = name
        ds = KGRecDataset(**kwargs, valid_ratio=valid_ratio, seed=seed,
                          max_ids=max_ids)
        full = torch.nonzero(ds.train_pos.degree() >= ds.num_items).view(-1)
        if full.numel() > 0:
            import os.path as osp
            train_file = osp.join(str(path), 'train.txt')
            u = int(full[0])
            raise ValueError(
                f"KGRecDataset.from_kgat: '{train_file}', line "
                f"{_line_of_user(train_file, u)}: user {u} has all "
                f"{ds.num_items} items as training positives (after the "
                f"validation split), so no negative can ever be drawn for "
                f"it; remove some of its items or the line, or raise "
                f"valid_ratio ({full.numel()} such users in all)")
        return ds

    # Graph views ###########################################################

    @property
    def data(self) -> HeteroData:
        r"""The collaborative KG as :class:`~torch_geometric.data.HeteroData`
        (built once, see :func:`~kgsampler.data.build_hetero_data`)."""
        if self._data is None:
            self._data = build_hetero_data(self)
        return self._data

    def homogeneous_kg(self) -> HomogeneousKG:
        r"""The collaborative KG as one homogeneous graph (built once, see
        :func:`~kgsampler.data.to_homogeneous_kg`)."""
        if self._homo is None:
            self._homo = to_homogeneous_kg(self)
        return self._homo

    # Names #################################################################

    def entity_name(self, i: int) -> str:
        r"""The name of entity (or item) :obj:`i`, or :obj:`'entity i'`."""
        if not 0 <= int(i) < self.num_entities:
            raise ValueError(f"{self.__class__.__name__}.entity_name: 'i' "
                             f"must lie in [0, {self.num_entities}) (got {i})")
        names = self.entity_names
        if names is not None and int(i) < len(names) and names[int(i)]:
            return names[int(i)]
        return f'entity {int(i)}'

    def relation_name(self, r: int) -> str:
        r"""The name of relation :obj:`r`, or :obj:`'relation r'`."""
        if not 0 <= int(r) < self.num_relations:
            raise ValueError(f"{self.__class__.__name__}.relation_name: 'r' "
                             f"must lie in [0, {self.num_relations}) "
                             f"(got {r})")
        names = self.relation_names
        if names is not None and int(r) < len(names) and names[int(r)]:
            return names[int(r)]
        return f'relation {int(r)}'

    # Summaries #############################################################

    def statistics(self) -> Dict[str, int]:
        r"""Sizes of the dataset as a dictionary."""
        return {
            'num_users': self.num_users,
            'num_items': self.num_items,
            'num_entities': self.num_entities,
            'num_relations': self.num_relations,
            'num_train': self.train_pos.nnz,
            'num_valid': self.valid_pos.nnz,
            'num_test': self.test_pos.nnz,
            'num_triples': self.kg.size(0),
        }

    @property
    def density(self) -> float:
        r"""Share of observed (user, item) pairs over all splits."""
        s = self.statistics()
        total = s['num_train'] + s['num_valid'] + s['num_test']
        return total / max(self.num_users * self.num_items, 1)

    def summary(self) -> str:
        r"""A human-readable table of :meth:`statistics` and the density."""
        s = self.statistics()
        rows = [(k[4:] if k.startswith('num_') else k, f'{v:,}')
                for k, v in s.items()]
        rows.append(('density', f'{self.density:.5f}'))
        width = max(len(k) for k, _ in rows)
        lines = [f'{self.__class__.__name__} ({self.name})']
        lines += [f'  {k:<{width}}  {v:>12}' for k, v in rows]
        return '\n'.join(lines)

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"{self.__class__.__name__}(name='{self.name}', "
                f"users={s['num_users']}, items={s['num_items']}, "
                f"entities={s['num_entities']}, "
                f"relations={s['num_relations']}, train={s['num_train']}, "
                f"valid={s['num_valid']}, test={s['num_test']}, "
                f"triples={s['num_triples']})")

    # Devices ###############################################################

    def to(self, device: Any) -> 'KGRecDataset':
        r"""Moves the splits, the KG and the cached graph views to
        :obj:`device` (in place) and returns the dataset."""
        self.train_pos = self.train_pos.to(device)
        self.valid_pos = self.valid_pos.to(device)
        self.test_pos = self.test_pos.to(device)
        self.kg = self.kg.to(device)
        if self.exposed is not None:
            self.exposed = self.exposed.to(device)
        if self._data is not None:
            self._data = self._data.to(device)
        if self._homo is not None:
            self._homo = self._homo.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.kg.device


def _line_of_user(path: str, user: int) -> int:
    r"""The 1-based line of :obj:`path` that starts with :obj:`user` (an
    error path only: a plain scan)."""
    with open(path, 'rb') as f:
        data = f.read().replace(b'\r\n', b'\n').replace(b'\r', b'\n')
    for n, line in enumerate(data.split(b'\n'), start=1):
        tokens = line.split()
        head = tokens[0].lstrip(b'\xef\xbb\xbf') if tokens else b''
        if head.isdigit() and int(head) == user:
            return n
    return 0  # pragma: no cover (the user came from this file)


def _kgat_kwargs(files) -> Dict[str, Any]:
    import os.path as osp
    return dict(
        train_pairs=files.train,
        test_pairs=files.test,
        kg=files.kg,
        num_users=files.num_users,
        num_items=files.num_items,
        num_entities=files.num_entities,
        num_relations=files.num_relations,
        relation_names=files.relation_names,
        entity_names=files.entity_names,
        name=osp.basename(osp.normpath(files.path)),
    )
