r"""Readers for the text format of the KGAT repository
(Wang et al., KDD 2019), used by KGPolicy and most knowledge-aware
recommenders.

A KGAT folder holds:

* :obj:`train.txt`, :obj:`test.txt`: one line per user,
  :obj:`user item item ...`; a line with only the user id (a user without
  items) is allowed.
* :obj:`kg_final.txt`: one triple per line, :obj:`head relation tail`,
  exactly three integer columns. Item :obj:`i` *is* entity :obj:`i`: entity
  ids :obj:`0..num_items-1` are the items, higher ids are other entities.
* optional :obj:`relation_list.txt` and :obj:`entity_list.txt`: one
  :obj:`name id` pair per line (see :func:`read_name_list`).

Ids are non-negative integers separated by any ASCII white space; blank
lines are skipped and CRLF line endings are accepted. The numeric files are
parsed in one vectorised pass (:mod:`numpy`); only when that pass finds a
problem is the file scanned again line by line to report the file path and
the (1-based) line number of the first offending line.
"""
from __future__ import annotations

import os.path as osp
import re
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    'DEFAULT_MAX_IDS',
    'KGATFiles',
    'read_interactions',
    'read_kg',
    'read_name_list',
    'read_kgat',
]

_BOM = b'\xef\xbb\xbf'
# The bytes `bytes.split()` treats as white space: space, \t, \n, \v, \f, \r.
_WS = np.zeros(256, dtype=bool)
_WS[[32, 9, 10, 11, 12, 13]] = True
# Bytes allowed in a numeric file: white space, digits and the minus sign.
_ALLOWED = _WS.copy()
_ALLOWED[ord('0'):ord('9') + 1] = True
_ALLOWED[ord('-')] = True
_INT_RE = re.compile(rb'-?[0-9]+')
_INT64_MAX = 2**63 - 1

#: The default bound on the number of users, items, entities and relations
#: an id may imply (ids up to :obj:`DEFAULT_MAX_IDS - 1`): over a hundred
#: times the largest public KGAT dataset (amazon-book, 88,572 entities), and
#: small enough that the tables a model allocates for it fit into memory.
DEFAULT_MAX_IDS = 10_000_000


def _check_max_ids(who: str, max_ids) -> int:
    import numbers
    if isinstance(max_ids, (bool, np.bool_)) or not isinstance(
            max_ids, numbers.Integral) or max_ids < 1:
        raise ValueError(f"{who}: 'max_ids' must be a positive int "
                         f"(got {max_ids!r})")
    return int(max_ids)


def _check_bound(values: np.ndarray, line: np.ndarray, path: str, who: str,
                 max_ids: int, what) -> None:
    r"""Raises a file:line :class:`ValueError` for the first id that implies
    more than :obj:`max_ids` rows (:obj:`what(k)` names the k-th token's
    kind), before anything of that size is allocated."""
    if values.size == 0 or int(values.max()) < max_ids:
        return
    k = int(np.flatnonzero(values >= max_ids)[0])
    raise _bound_error(who, path, int(line[k]), what(k), int(values[k]),
                       max_ids)


def _bound_error(who: str, path: str, line: int, what: str, v: int,
                 max_ids: int) -> ValueError:
    return ValueError(f"{who}: '{path}', line {line}: {what} id "
                     f"{v} implies {v + 1:,} of them, more than max_ids="
                     f"{max_ids:,} (a guard against ids that would make a "
                     f"model allocate absurd tables; pass a larger max_ids, "
                     f"e.g. +dataset.max_ids=N, if the data is that large)")


@dataclass
class _Tokens:
    values: np.ndarray  # int64, every integer token of the file in order
    line: np.ndarray  # int64, 1-based line number of every token


def _read_bytes(path: str, who: str) -> bytes:
    if not osp.isfile(path):
        raise FileNotFoundError(f"{who}: file '{path}' not found")
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:  # e.g. PermissionError: keep the path in the text
        raise type(e)(e.errno, f"{who}: cannot read '{path}': "
                      f"{e.strerror or e}", path) from e
    if b'\r' in data:  # Windows (CR LF) and old Mac (lone CR) line breaks
        data = data.replace(b'\r\n', b'\n').replace(b'\r', b'\n')
    return data[len(_BOM):] if data.startswith(_BOM) else data


def _locate_error(data: bytes, path: str, who: str,
                  num_cols: Optional[int]) -> None:
    r"""The slow path: scans :obj:`data` line by line and raises a
    :class:`ValueError` naming the first offending line."""
    for n, line in enumerate(data.split(b'\n'), start=1):
        tokens = line.split()
        for tok in tokens:
            if _INT_RE.fullmatch(tok) is None:
                raise ValueError(
                    f"{who}: '{path}', line {n}: expected integer ids (got "
                    f"the token {tok.decode('utf-8', 'replace')!r})")
        if num_cols is not None and len(tokens) not in (0, num_cols):
            raise ValueError(
                f"{who}: '{path}', line {n}: expected {num_cols} columns "
                f"(got {len(tokens)}: "
                f"{line.strip().decode('utf-8', 'replace')!r})")
        for tok in tokens:
            value = int(tok)
            if value < 0:
                raise ValueError(f"{who}: '{path}', line {n}: ids must be "
                                 f"non-negative (got {value})")
            if value > _INT64_MAX:
                raise ValueError(f"{who}: '{path}', line {n}: id does not "
                                 f"fit into int64 (got {value})")
    raise ValueError(f"{who}: '{path}' could not be parsed")  # unreachable


def _tokenize(path: str, who: str, num_cols: Optional[int] = None) -> _Tokens:
    r"""Reads every integer token of a file together with its line number.

    Args:
        path (str): The file.
        who (str): The public function name used in error messages.
        num_cols (int, optional): If set, every non-blank line must hold
            exactly this many tokens.
    """
    data = _read_bytes(path, who)
    buf = np.frombuffer(data, dtype=np.uint8)
    if not bool(_ALLOWED[buf].all()):
        _locate_error(data, path, who, num_cols)

    ws = _WS[buf]
    # A token starts at a non-space byte that follows a space (or the start).
    start = ~ws
    start[1:] &= ws[:-1]
    start = np.flatnonzero(start)
    if start.size == 0:
        raise ValueError(f"{who}: '{path}' holds no data lines (got an empty "
                         f"file)")
    newline = np.flatnonzero(buf == 10)
    line = np.searchsorted(newline, start) + 1  # 1-based line numbers

    try:
        values = np.array(data.split()).astype(np.int64)
    except (ValueError, OverflowError):
        _locate_error(data, path, who, num_cols)
    if values.size != start.size:  # pragma: no cover (safety net)
        _locate_error(data, path, who, num_cols)
    if num_cols is not None:
        count = np.bincount(line)
        if bool(((count != 0) & (count != num_cols)).any()):
            _locate_error(data, path, who, num_cols)
    if int(values.min()) < 0:
        _locate_error(data, path, who, num_cols)
    return _Tokens(values, line.astype(np.int64))


def _dedup(rows: np.ndarray, path: str, who: str,
           what: str) -> Tuple[np.ndarray, np.ndarray]:
    r"""Sorts the rows lexicographically and removes duplicates, warning with
    their count. Returns the kept rows and their positions in the input."""
    if rows.shape[0] == 0:
        return rows, np.zeros(0, dtype=np.int64)
    order = np.lexsort(rows.T[::-1])  # by column 0, then 1, ...; stable
    srt = rows[order]
    dup = np.zeros(rows.shape[0], dtype=bool)
    dup[1:] = (srt[1:] == srt[:-1]).all(axis=1)
    num_dup = int(dup.sum())
    if num_dup > 0:
        warnings.warn(f"{who}: removed {num_dup} duplicate {what} from "
                      f"'{path}'", UserWarning, stacklevel=3)
    return np.ascontiguousarray(srt[~dup]), order[~dup]


@dataclass
class _Interactions:
    pairs: np.ndarray  # [E, 2] (user, item), duplicate-free, sorted
    line: np.ndarray  # [E] 1-based line of every pair
    max_user: int  # largest user id seen (also on lines without items)


def _read_interactions(path: str, who: str,
                       max_ids: int = DEFAULT_MAX_IDS) -> _Interactions:
    tok = _tokenize(path, who)
    first = np.ones(tok.line.size, dtype=bool)  # first token of its line
    first[1:] = tok.line[1:] != tok.line[:-1]
    _check_bound(tok.values, tok.line, path, who, max_ids,
                 lambda k: 'user' if first[k] else 'item')
    group = np.cumsum(first) - 1
    user = tok.values[first][group]
    is_item = ~first
    pairs = np.stack([user[is_item], tok.values[is_item]], axis=1)
    pairs, keep = _dedup(pairs, path, who, 'user-item pairs')
    return _Interactions(pairs, tok.line[is_item][keep],
                         int(tok.values[first].max()))


def read_interactions(path: str, max_ids: int = DEFAULT_MAX_IDS) -> Tensor:
    r"""Reads a KGAT interaction file (:obj:`train.txt` or :obj:`test.txt`):
    one line per user, :obj:`user item item ...`.

    Duplicate (user, item) pairs are removed with a warning that names the
    file and their count.

    Args:
        path (str): The file.
        max_ids (int, optional): Ids must be below this bound (an id
            :math:`v` implies :math:`v + 1` users or items).
            (default: :obj:`DEFAULT_MAX_IDS`, ten million)

    Shapes:
        - **output:** :math:`(E, 2)`, :obj:`torch.long` (user, item) pairs
          sorted by user, then item.

    Raises:
        ValueError: On an empty file, a non-integer token, a negative id or
            an id of :obj:`max_ids` or more, naming the file and the line.
    """
    max_ids = _check_max_ids('read_interactions', max_ids)
    out = _read_interactions(str(path), 'read_interactions', max_ids)
    return torch.from_numpy(out.pairs.copy())


def read_kg(path: str, max_ids: int = DEFAULT_MAX_IDS) -> Tensor:
    r"""Reads a KGAT :obj:`kg_final.txt`: one :obj:`head relation tail`
    triple per line.

    Duplicate triples are removed with a warning that names the file and
    their count.

    Args:
        path (str): The file.
        max_ids (int, optional): Entity and relation ids must be below this
            bound. (default: :obj:`DEFAULT_MAX_IDS`, ten million)

    Shapes:
        - **output:** :math:`(T, 3)`, :obj:`torch.long` (head, relation,
          tail) triples sorted by head, relation, tail.

    Raises:
        ValueError: On an empty file, a line without exactly three columns, a
            non-integer token, a negative id or an id of :obj:`max_ids` or
            more, naming the file and the line.
    """
    path = str(path)
    max_ids = _check_max_ids('read_kg', max_ids)
    tok = _tokenize(path, 'read_kg', num_cols=3)
    _check_bound(tok.values, tok.line, path, 'read_kg', max_ids,
                 lambda k: ('head entity', 'relation', 'tail entity')[k % 3])
    triples, _ = _dedup(tok.values.reshape(-1, 3), path, 'read_kg',
                        'triples')
    return torch.from_numpy(triples)


def _as_int(token: str) -> Optional[int]:
    return int(token) if re.fullmatch(r'-?[0-9]+', token) else None


def read_name_list(path: str,
                   max_ids: int = DEFAULT_MAX_IDS) -> List[Optional[str]]:
    r"""Reads a KGAT name list (:obj:`relation_list.txt`,
    :obj:`entity_list.txt`) into a list indexed by id.

    Rule per non-blank line (tokens split on white space):

    1. if the *last* token is an integer, it is the id and the name is all
       other tokens joined by one space (:obj:`name id`; names may contain
       spaces);
    2. otherwise, if the *second* token is an integer, it is the id and the
       first token is the name (KGAT's :obj:`org_id remap_id freebase_id`);
    3. otherwise the line is a header (e.g. :obj:`org_id remap_id`), which is
       only allowed as the first non-blank line and is skipped.

    Ids without a line get :obj:`None`.

    Args:
        path (str): The file.
        max_ids (int, optional): Ids must be below this bound.
            (default: :obj:`DEFAULT_MAX_IDS`, ten million)

    Raises:
        ValueError: On a line without an id (other than the header), a
            negative id, an id of :obj:`max_ids` or more, or an id listed
            twice, naming the file and the line.
    """
    path, who = str(path), 'read_name_list'
    max_ids = _check_max_ids(who, max_ids)
    text = _read_bytes(path, who).decode('utf-8', 'replace')
    ids: List[int] = []
    names: List[str] = []
    lines: List[int] = []
    seen_data = False
    for n, line in enumerate(text.split('\n'), start=1):
        tokens = line.split()
        if not tokens:
            continue
        idx = _as_int(tokens[-1]) if len(tokens) >= 2 else None
        name = ' '.join(tokens[:-1])
        if idx is None and len(tokens) >= 2:
            idx, name = _as_int(tokens[1]), tokens[0]
        if idx is None:
            if seen_data:
                raise ValueError(f"{who}: '{path}', line {n}: expected "
                                 f"'name id' (got {line.strip()!r})")
            seen_data = True  # the header
            continue
        seen_data = True
        if idx < 0:
            raise ValueError(f"{who}: '{path}', line {n}: ids must be "
                             f"non-negative (got {idx})")
        if idx >= max_ids:
            raise _bound_error(who, path, n, 'listed', idx, max_ids)
        ids.append(idx)
        names.append(name)
        lines.append(n)
    if not ids:
        raise ValueError(f"{who}: '{path}' holds no 'name id' lines (got an "
                         f"empty list)")
    id_arr = np.asarray(ids, dtype=np.int64)
    order = np.argsort(id_arr, kind='stable')
    twice = np.flatnonzero(id_arr[order][1:] == id_arr[order][:-1])
    if twice.size > 0:
        a, b = order[twice[0]], order[twice[0] + 1]
        raise ValueError(f"{who}: '{path}', line {lines[b]}: id {ids[b]} is "
                         f"already used on line {lines[a]}")
    top = int(np.argmax(id_arr))
    try:
        out: List[Optional[str]] = [None] * (int(id_arr[top]) + 1)
    except (MemoryError, OverflowError):
        raise ValueError(f"{who}: '{path}', line {lines[top]}: id "
                         f"{ids[top]} is too large (a list of "
                         f"{ids[top] + 1} names does not fit into memory)"
                         ) from None
    for i, name in zip(ids, names):
        out[i] = name
    return out


@dataclass
class KGATFiles:
    r"""The content of a KGAT folder, as returned by :func:`read_kgat`.

    Args:
        train (torch.Tensor): Training (user, item) pairs, duplicate-free.
        test (torch.Tensor): Test (user, item) pairs, duplicate-free.
        kg (torch.Tensor): (head, relation, tail) triples, duplicate-free.
        num_users (int): Largest user id (lines without items included)
            plus one.
        num_items (int): Largest item id of train and test plus one.
        num_entities (int): :obj:`max(num_items, largest KG entity id + 1,
            len(entity_names))`.
        num_relations (int): :obj:`max(largest relation id + 1,
            len(relation_names))`.
        relation_names (List[str], optional): From :obj:`relation_list.txt`.
        entity_names (List[str], optional): From :obj:`entity_list.txt`.
        path (str): The folder.

    Shapes:
        - **train, test:** :math:`(E, 2)`
        - **kg:** :math:`(T, 3)`
    """
    train: Tensor
    test: Tensor
    kg: Tensor
    num_users: int
    num_items: int
    num_entities: int
    num_relations: int
    relation_names: Optional[List[Optional[str]]]
    entity_names: Optional[List[Optional[str]]]
    path: str


def read_kgat(path: str, max_ids: int = DEFAULT_MAX_IDS) -> KGATFiles:
    r"""Reads a KGAT folder (:obj:`train.txt`, :obj:`test.txt`,
    :obj:`kg_final.txt`, optional :obj:`relation_list.txt` and
    :obj:`entity_list.txt`).

    Besides the per-file checks of :func:`read_interactions`,
    :func:`read_kg` and :func:`read_name_list`, every test item must occur
    in :obj:`train.txt` or somewhere (head or tail) in :obj:`kg_final.txt`,
    as nothing could be learnt about it otherwise.

    Args:
        path (str): The folder.
        max_ids (int, optional): Every id (user, item, entity, relation)
            must be below this bound, checked before anything is allocated
            for it. (default: :obj:`DEFAULT_MAX_IDS`, ten million)

    Raises:
        FileNotFoundError: If a required file is missing.
        ValueError: On malformed content, naming the file and the line.
    """
    path = str(path)
    who = 'read_kgat'
    max_ids = _check_max_ids(who, max_ids)
    if not osp.isdir(path):
        raise FileNotFoundError(f"{who}: folder '{path}' not found")
    for fname in ('train.txt', 'test.txt', 'kg_final.txt'):
        if not osp.isfile(osp.join(path, fname)):
            raise FileNotFoundError(f"{who}: file '{fname}' not found in "
                                    f"folder '{path}'")
    train_file = osp.join(path, 'train.txt')
    test_file = osp.join(path, 'test.txt')
    train = _read_interactions(train_file, 'read_interactions', max_ids)
    test = _read_interactions(test_file, 'read_interactions', max_ids)
    kg = read_kg(osp.join(path, 'kg_final.txt'), max_ids)

    if train.pairs.shape[0] == 0:
        raise ValueError(f"{who}: '{train_file}' holds no (user, item) "
                         f"pairs (got only user ids)")
    num_users = max(train.max_user, test.max_user) + 1
    num_items = int(train.pairs[:, 1].max()) + 1
    if test.pairs.shape[0] > 0:
        num_items = max(num_items, int(test.pairs[:, 1].max()) + 1)

    # Every test item must be known from train or from the KG:
    known = np.zeros(num_items, dtype=bool)
    known[train.pairs[:, 1]] = True
    ent = kg[:, [0, 2]].numpy().reshape(-1)
    known[ent[ent < num_items]] = True
    unknown = np.flatnonzero(~known[test.pairs[:, 1]])
    if unknown.size > 0:
        i = int(unknown[np.argmin(test.line[unknown])])
        raise ValueError(
            f"{who}: '{test_file}', line {int(test.line[i])}: test item "
            f"{int(test.pairs[i, 1])} (of user {int(test.pairs[i, 0])}) "
            f"occurs neither in 'train.txt' nor in 'kg_final.txt' "
            f"({unknown.size} such test pairs in all)")

    relation_names = entity_names = None
    if osp.isfile(osp.join(path, 'relation_list.txt')):
        relation_names = read_name_list(osp.join(path, 'relation_list.txt'),
                                        max_ids)
    if osp.isfile(osp.join(path, 'entity_list.txt')):
        entity_names = read_name_list(osp.join(path, 'entity_list.txt'),
                                      max_ids)

    num_entities = max(num_items, int(ent.max()) + 1)
    num_relations = int(kg[:, 1].max()) + 1
    for fname, names, count in (('entity_list.txt', entity_names,
                                 num_entities),
                                ('relation_list.txt', relation_names,
                                 num_relations)):
        if names is not None and len(names) > count:
            warnings.warn(f"{who}: '{osp.join(path, fname)}' names ids up to "
                          f"{len(names) - 1}, beyond the {count} of the data "
                          f"files; the counts are extended to "
                          f"{len(names)} (isolated nodes or unused "
                          f"relations)", UserWarning, stacklevel=2)
    if entity_names is not None:
        num_entities = max(num_entities, len(entity_names))
    if relation_names is not None:
        num_relations = max(num_relations, len(relation_names))

    return KGATFiles(
        train=torch.from_numpy(train.pairs.copy()),
        test=torch.from_numpy(test.pairs.copy()),
        kg=kg,
        num_users=num_users,
        num_items=num_items,
        num_entities=num_entities,
        num_relations=num_relations,
        relation_names=relation_names,
        entity_names=entity_names,
        path=path,
    )
