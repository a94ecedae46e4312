r"""A reader for RecBole's atomic files (Zhao et al., CIKM 2021), the format
most public recommendation data is distributed in.

A RecBole dataset folder :obj:`path` named :obj:`name` holds:

* :obj:`{name}.inter` (required): interactions, one per line, tab-separated,
  with a typed header such as
  :obj:`user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float`;
  :obj:`user_id` and :obj:`item_id` are required, every other column is
  optional (a :obj:`rating` column is used by :obj:`rating_threshold`).
* :obj:`{name}.kg` (optional): KG triples,
  :obj:`head_id:token<TAB>relation_id:token<TAB>tail_id:token`.
* :obj:`{name}.link` (optional, needed with a KG):
  :obj:`item_id:token<TAB>entity_id:token`, the KG entity of an item.

Tokens are arbitrary strings, mapped to contiguous ids: users and items in
the order of their first appearance in :obj:`.inter`, the linked entities to
their items' ids (item :obj:`i` *is* entity :obj:`i`, as everywhere in
:mod:`kgsampler`), every other KG entity after the items in the order of
first appearance in :obj:`.kg`, relations likewise. Every malformed line is
reported by file and line; nothing is dropped silently (rows below the
rating threshold are counted in the dataset's :obj:`num_below_threshold`;
:obj:`.link` rows of items without interactions in
:obj:`num_unused_links`).
"""
from __future__ import annotations

import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from kgsampler.data.csr import UserItemCSR
from kgsampler.data.split import split_per_user

__all__ = ['read_recbole']

_WHO = 'read_recbole'


def _rows(path: str, required: Sequence[str]
          ) -> Tuple[Dict[str, int], List[Tuple[int, List[str]]]]:
    r"""The header's column positions by field name (the part before
    :obj:`:`) and the (line number, fields) of every non-blank data line."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"{_WHO}: file '{path}' not found")
    with open(path, encoding='utf-8', newline='') as f:
        text = f.read()
    lines = text.lstrip('\ufeff').replace('\r\n', '\n').split('\n')
    header = lines[0].split('\t') if lines else ['']
    cols: Dict[str, int] = {}
    for pos, field in enumerate(header):
        name, sep, ftype = field.strip().partition(':')
        if not sep or not name or ftype not in ('token', 'float',
                                                'token_seq', 'float_seq'):
            raise ValueError(
                f"{_WHO}: '{path}', line 1: header fields must be 'name:type' "
                f"with type token, float, token_seq or float_seq, tab-"
                f"separated (got {field!r})")
        if name in cols:
            raise ValueError(f"{_WHO}: '{path}', line 1: the field {name!r} "
                             f"appears twice")
        cols[name] = pos
    for name in required:
        if name not in cols:
            raise ValueError(f"{_WHO}: '{path}', line 1: no {name!r} field "
                             f"(got {sorted(cols)})")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split('\t')
        if len(fields) != len(header):
            raise ValueError(f"{_WHO}: '{path}', line {n}: expected "
                             f"{len(header)} tab-separated fields as in the "
                             f"header (got {len(fields)})")
        for name in required:
            if not fields[cols[name]].strip():
                raise ValueError(f"{_WHO}: '{path}', line {n}: the field "
                                 f"{name!r} is empty")
        rows.append((n, fields))
    return cols, rows


class _Vocab:
    """Tokens to contiguous ids in order of first appearance."""
    def __init__(self):
        self.ids: Dict[str, int] = {}

    def __call__(self, token: str) -> int:
        return self.ids.setdefault(token, len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def names(self) -> List[str]:
        return list(self.ids)


def read_recbole(path: str, name: Optional[str] = None,
                 rating_threshold: Optional[float] = None,
                 test_ratio: float = 0.2, valid_ratio: float = 0.1,
                 seed: int = 2020):
    r"""Reads RecBole atomic files into a
    :class:`~kgsampler.data.KGRecDataset` (also reachable as
    :meth:`KGRecDataset.from_recbole`).

    Interactions: with :obj:`rating_threshold` set, a row is a positive when
    its :obj:`rating` is at least the threshold (RecBole's
    :obj:`threshold: {rating: t}`; e.g. 4 on MovieLens, as the KGAT/KGPolicy
    data), the other rows are dropped and counted; without it every row is a
    positive. Repeated (user, item) rows count once. A user's positives are
    split at random into test (:obj:`test_ratio`, rounded, every user keeps
    at least one training item) and train, then validation is carved out of
    train as for every dataset (:obj:`valid_ratio`); both splits are pure
    functions of :obj:`seed`.

    Without a :obj:`.kg` file the dataset has no KG: KG-free samplers and
    recommenders run on it, KG-based ones raise an error saying they need a
    KG. A :obj:`.kg` file needs a :obj:`.link` file.

    Args:
        path (str): The dataset folder.
        name (str, optional): The files' stem; the folder's name when
            :obj:`None`. (default: :obj:`None`)
        rating_threshold (float, optional): Minimum :obj:`rating` of a
            positive; :obj:`None` keeps every row. (default: :obj:`None`)
        test_ratio (float, optional): Share of each user's positives held
            out for test, in :math:`[0, 1)`. (default: :obj:`0.2`)
        valid_ratio (float, optional): Share of each user's training
            positives held out for validation, in :math:`[0, 1)`.
            (default: :obj:`0.1`)
        seed (int, optional): Seed of both splits. (default: :obj:`2020`)
    """
    from kgsampler.data.dataset import KGRecDataset
    if not isinstance(path, str) or not osp.isdir(path):
        raise FileNotFoundError(f"{_WHO}: 'path' must be a folder (got "
                                f"{path!r})")
    name = osp.basename(osp.normpath(path)) if name is None else name
    if not isinstance(name, str) or not name:
        raise TypeError(f"{_WHO}: 'name' must be a non-empty str (got "
                        f"{name!r})")
    if rating_threshold is not None and (
            isinstance(rating_threshold, bool)
            or not isinstance(rating_threshold, (int, float))):
        raise TypeError(f"{_WHO}: 'rating_threshold' must be a number or "
                        f"None (got {rating_threshold!r})")
    if isinstance(test_ratio, bool) or not isinstance(
            test_ratio, (int, float)) or not 0.0 <= test_ratio < 1.0:
        raise ValueError(f"{_WHO}: 'test_ratio' must be a float in [0, 1) "
                         f"(got {test_ratio!r})")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{_WHO}: 'seed' must be an int (got {seed!r})")

    inter = osp.join(path, f'{name}.inter')
    cols, rows = _rows(inter, ['user_id', 'item_id'])
    if rating_threshold is not None and 'rating' not in cols:
        raise ValueError(f"{_WHO}: rating_threshold={rating_threshold!r} but "
                         f"'{inter}' has no 'rating' field (got "
                         f"{sorted(cols)})")
    users, items = _Vocab(), _Vocab()
    pairs, below = [], 0
    ui, ii, ri = cols['user_id'], cols['item_id'], cols.get('rating')
    for n, fields in rows:
        u, i = users(fields[ui].strip()), items(fields[ii].strip())
        if rating_threshold is not None:
            try:
                rating = float(fields[ri])
            except ValueError:
                raise ValueError(f"{_WHO}: '{inter}', line {n}: the rating "
                                 f"must be a number (got "
                                 f"{fields[ri]!r})") from None
            if not rating >= rating_threshold:
                below += 1
                continue
        pairs.append((u, i))
    if not pairs:
        raise ValueError(f"{_WHO}: '{inter}' has no positive interaction "
                         f"({len(rows)} rows, {below} below "
                         f"rating_threshold={rating_threshold!r})")

    kg_path, link_path = (osp.join(path, f'{name}.kg'),
                          osp.join(path, f'{name}.link'))
    triples: List[Tuple[int, int, int]] = []
    unused_links = 0
    relations = _Vocab()
    entity_names: Optional[List[Optional[str]]] = None
    num_entities = len(items)
    if osp.isfile(kg_path):
        if not osp.isfile(link_path):
            raise FileNotFoundError(
                f"{_WHO}: '{kg_path}' needs '{link_path}' (item_id:token, "
                f"entity_id:token) to tie the KG's entities to the items")
        lcols, lrows = _rows(link_path, ['item_id', 'entity_id'])
        entity_of: Dict[str, int] = {}
        names: List[Optional[str]] = [None] * len(items)
        unused_links = 0
        for n, fields in lrows:
            item = fields[lcols['item_id']].strip()
            ent = fields[lcols['entity_id']].strip()
            if item not in items.ids:  # an item without interactions
                unused_links += 1
                continue
            i = items.ids[item]
            if ent in entity_of and entity_of[ent] != i:
                raise ValueError(
                    f"{_WHO}: '{link_path}', line {n}: entity {ent!r} is "
                    f"already the entity of another item (kgsampler's items "
                    f"are their own KG entities: one entity per item)")
            if names[i] is not None and names[i] != ent:
                raise ValueError(f"{_WHO}: '{link_path}', line {n}: item "
                                 f"{item!r} is linked to a second entity "
                                 f"({names[i]!r}, then {ent!r})")
            entity_of[ent], names[i] = i, ent
        kcols, krows = _rows(kg_path, ['head_id', 'relation_id', 'tail_id'])

        def entity(token: str) -> int:
            if token not in entity_of:
                entity_of[token] = len(names)
                names.append(token)
            return entity_of[token]
        for _, fields in krows:
            triples.append((entity(fields[kcols['head_id']].strip()),
                            relations(fields[kcols['relation_id']].strip()),
                            entity(fields[kcols['tail_id']].strip())))
        num_entities, entity_names = len(names), names

    pos = UserItemCSR.from_pairs(torch.tensor([p[0] for p in pairs]),
                                 torch.tensor([p[1] for p in pairs]),
                                 len(users), len(items))
    split = split_per_user(pos, float(test_ratio),
                           torch.Generator().manual_seed(seed))

    def to_pairs(csr: UserItemCSR) -> torch.Tensor:
        return torch.stack([csr.row_ids(), csr.indices], dim=1)
    kg = (torch.tensor(triples, dtype=torch.long) if triples
          else torch.zeros(0, 3, dtype=torch.long))
    ds = KGRecDataset(
        to_pairs(split.keep), to_pairs(split.held_out), kg,
        num_users=len(users), num_items=len(items),
        num_entities=num_entities, num_relations=len(relations),
        valid_ratio=valid_ratio, seed=seed, name=name,
        relation_names=relations.names() if len(relations) else None,
        entity_names=entity_names)
    ds.user_tokens, ds.item_tokens = users.names(), items.names()
    ds.num_below_threshold, ds.num_unused_links = below, unused_links
    return ds
