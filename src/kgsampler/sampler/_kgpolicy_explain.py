r"""KGPolicy, part 5: explanations (the paper's case study): the exploring
paths of a :class:`~kgsampler.sampler.KGPolicy` output as text, with entity
and relation names where the dataset has them."""
from __future__ import annotations

from typing import List, Optional

from torch import Tensor

from kgsampler.sampler.base import SamplerOutput


def _name(dataset, node: int) -> str:
    U, I = int(dataset.num_users), int(dataset.num_items)
    if node < U:
        return f'user {node}'
    e = node - U
    kind = 'item' if e < I else 'entity'
    fn = getattr(dataset, 'entity_name', None)
    name = fn(e) if callable(fn) else None
    if name and name != f'entity {e}':
        return f'{kind} {e} "{name}"'
    return f'{kind} {e}'


def _relation(dataset, a: int, b: int) -> Optional[str]:
    r"""Name of the graph edge :obj:`a -> b` (:obj:`None` if there is none:
    a jump to a random item or a fallback)."""
    U = int(dataset.num_users)
    if (a < U) != (b < U):
        u, node = (a, b) if a < U else (b, a)
        e = node - U
        if e < int(dataset.num_items) and bool(
                (dataset.train_pos.row(u) == e).any()):
            return 'interacts' if a < U else 'interacted_by'
        return None
    if a < U:
        return None
    kg = dataset.kg
    ea, eb = a - U, b - U
    hit = ((kg[:, 0] == ea) & (kg[:, 2] == eb)).nonzero()
    inverse = ''
    if hit.numel() == 0:
        hit = ((kg[:, 0] == eb) & (kg[:, 2] == ea)).nonzero()
        inverse = '^-1'
    if hit.numel() == 0:
        return None
    r = int(kg[hit[0, 0], 1])
    fn = getattr(dataset, 'relation_name', None)
    return (fn(r) if callable(fn) else f'relation {r}') + inverse


def format_paths(dataset, users: Tensor, output: SamplerOutput,
                 n: int = 5) -> List[str]:
    r"""Human-readable exploring paths of a :class:`KGPolicy` output (the
    paper's case study), with entity and relation names where the dataset
    has them, e.g. ``user 7: item 12 "Heat" -[film.film.genre]-> entity 2401
    "Crime Film" -[film.film.genre^-1]-> item 88 "Ronin" => negative 88``.
    ``~>`` marks a jump to one of the random items, ``(no neighbour)`` a hop
    without candidates and ``(uniform fallback)`` a negative replaced by a
    uniform one.

    Args:
        dataset (KGRecDataset): The dataset the sampler was built on.
        users (torch.Tensor): The users passed to :meth:`KGPolicy.sample`.
        output (SamplerOutput): Its output (needs :obj:`paths`).
        n (int, optional): Number of paths to format. (default: :obj:`5`)

    Shapes:
        - **users:** :math:`(B)`
        - **output.neg_items:** :math:`(B, N)`
        - **output.paths:** :math:`(B, N, L)`, :math:`L = 2T + 1` for
          :class:`KGPolicy` (:obj:`-1` pads)
        - **output.fallback:** :math:`(B, N)`, optional
        - **return:** a list of :math:`\min(n, B N)` strings, rows in
          order (row :math:`b`'s :math:`N` paths, then row :math:`b + 1`'s)
    """
    if output.paths is None:
        raise ValueError("format_paths: 'output' has no paths (not a "
                         "KGPolicy output)")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"format_paths: 'n' must be a non-negative int "
                         f"(got {n!r})")
    paths = output.paths.cpu()
    B, N, _ = paths.shape
    lines = []
    for row in range(min(n, B * N)):
        b, j = divmod(row, N)
        nodes = [int(x) for x in paths[b, j]]
        text, prev = _name(dataset, nodes[0]), nodes[0]
        for node in nodes[1:]:
            if node < 0:
                text += ' -> (no neighbour)'
                continue
            rel = _relation(dataset, prev, node)
            text += (f' ~> {_name(dataset, node)}' if rel is None else
                     f' -[{rel}]-> {_name(dataset, node)}')
            prev = node
        if output.fallback is not None and bool(output.fallback[b, j]):
            text += ' (uniform fallback)'
        lines.append(f'user {int(users[b])}: {text} => negative '
                     f'{int(output.neg_items[b, j])}')
    return lines
