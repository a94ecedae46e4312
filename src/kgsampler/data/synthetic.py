r"""Synthetic recommendation datasets with a knowledge graph: a small dense
one where personalisation pays off and hard (KG-neighbour) negatives are
real (:func:`make_synthetic`), and a sparse one that scales to 10^7
interactions (:func:`make_large_synthetic`)."""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.data.dataset import KGRecDataset
from kgsampler.data.split import split_per_user

__all__ = ['make_synthetic', 'make_large_synthetic']

RELATION_NAMES = ['genre', 'creator', 'era', 'main_genre']


def _zipf(n: int, exponent: float, gen: torch.Generator) -> Tensor:
    r"""Zipf weights :math:`1 / r^{a}` over :obj:`n` ids in random order."""
    w = 1.0 / torch.arange(1, n + 1, dtype=torch.float64).pow(exponent)
    return w[torch.randperm(n, generator=gen)]


def _draw(weights: Tensor, n: int, gen: torch.Generator) -> Tensor:
    r""":obj:`n` ids drawn with replacement, proportional to :obj:`weights`
    (inverse CDF: one :func:`torch.rand` call and a binary search, O(n)
    memory, unlike :func:`torch.multinomial`'s limits on large supports)."""
    cdf = weights.cumsum(0)
    cdf = cdf / cdf[-1]
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.searchsorted(cdf, u).clamp_(max=weights.numel() - 1)


def _check_int(name: str, value, low: int,
               who: str = 'make_synthetic') -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{who}: '{name}' must be an int >= {low} "
                         f"(got {value!r})")
    return value


def _check_prob(name: str, value, high_open: bool = False,
                who: str = 'make_synthetic') -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < 0 or value > 1 or (high_open and value == 1):
        raise ValueError(f"{who}: '{name}' must be a float in "
                         f"[0, {'1)' if high_open else '1]'} (got {value!r})")
    return float(value)


def _csr_from_dense(mask: Tensor) -> UserItemCSR:
    indptr = torch.zeros(mask.size(0) + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(mask.sum(dim=1), 0)
    return UserItemCSR(indptr, mask.nonzero()[:, 1].contiguous(),
                       mask.size(1))


def make_synthetic(
    num_users: int = 2500,
    num_items: int = 2000,
    num_genres: int = 20,
    num_creators: int = 200,
    num_eras: int = 10,
    min_combos: int = 2,
    max_combos: int = 4,
    min_combo_items: int = 5,
    exposure_rate: float = 0.3,
    choice_rate: float = 0.7,
    noise: float = 0.05,
    test_ratio: float = 0.2,
    valid_ratio: float = 0.1,
    seed: int = 0,
) -> KGRecDataset:
    r"""The built-in default dataset (:obj:`name='synthetic'`): users who
    like *combinations* of item attributes, and a KG that holds the
    attributes.

    **Items and KG.** Every item has one creator (sometimes a second one),
    one or two genres and one era, the attribute entities of the KG, linked
    by the relations :obj:`genre`, :obj:`creator` and :obj:`era` (item
    :math:`\rightarrow` attribute); every creator has a main genre
    (relation :obj:`main_genre`, creator :math:`\rightarrow` genre). Most of
    a creator's items are in the creator's main genre and era. Creators and
    genres have Zipf-distributed popularity.

    **Users.** Every user likes between :obj:`min_combos` and
    :obj:`max_combos` attribute *combinations*, each either a
    (genre, creator) pair (the creator's main genre) or a (genre, era) pair,
    drawn among the combinations shared by at least :obj:`min_combo_items`
    items, popular creators and genres more often.

    **Exposure and choice.** A user was shown a random share
    :obj:`exposure_rate` of all items that share *one* attribute with a
    liked combination, and chose (:obj:`choice_rate`) only those that match
    a *whole* combination, plus a little noise: about :obj:`noise` times as
    many popular items. Items that were shown but not chosen are hard,
    factual negatives: they look like the positives in the KG (same genre,
    same creator or same era) but were passed over. They are kept in
    :attr:`dataset.exposed` (a :class:`UserItemCSR`) for diagnostics only;
    neither the splits nor the KG contain them.

    **Splits.** Each user's chosen items are split at random into train and
    test (:obj:`test_ratio`, rounded half up, at least one train item), then
    :class:`KGRecDataset` carves validation out of train (:obj:`valid_ratio`).

    Entity ids: items :obj:`0..num_items-1`, then genres, creators and eras,
    named :obj:`'item:i'`, :obj:`'genre:g'`, :obj:`'creator:c'` and
    :obj:`'era:e'`. Everything is vectorised and a pure function of
    :obj:`seed` (one :class:`torch.Generator`). With the defaults: 2,500
    users, 2,000 items, 230 attribute entities, 4 relations, about 100K
    interactions.

    Args:
        num_users (int, optional): Users. (default: :obj:`2500`)
        num_items (int, optional): Items. (default: :obj:`2000`)
        num_genres (int, optional): Genre entities. (default: :obj:`20`)
        num_creators (int, optional): Creator entities. (default: :obj:`200`)
        num_eras (int, optional): Era entities. (default: :obj:`10`)
        min_combos (int, optional): Fewest liked combinations per user.
            (default: :obj:`2`)
        max_combos (int, optional): Most liked combinations per user.
            (default: :obj:`4`)
        min_combo_items (int, optional): Fewest items a likeable combination
            must match. (default: :obj:`5`)
        exposure_rate (float, optional): Share of the items sharing one
            attribute with a liked combination that the user was shown.
            (default: :obj:`0.3`)
        choice_rate (float, optional): Share of the matching items the user
            chose. (default: :obj:`0.7`)
        noise (float, optional): Popular items chosen without a reason, per
            chosen item. (default: :obj:`0.05`)
        test_ratio (float, optional): Per-user share of test items.
            (default: :obj:`0.2`)
        valid_ratio (float, optional): Per-user share of the training items
            moved to validation. (default: :obj:`0.1`)
        seed (int, optional): Random seed. (default: :obj:`0`)
    """
    U = _check_int('num_users', num_users, 1)
    I = _check_int('num_items', num_items, 1)  # noqa: E741
    G = _check_int('num_genres', num_genres, 1)
    C = _check_int('num_creators', num_creators, 1)
    R = _check_int('num_eras', num_eras, 1)
    kmin = _check_int('min_combos', min_combos, 1)
    kmax = _check_int('max_combos', max_combos, kmin)
    min_match = _check_int('min_combo_items', min_combo_items, 1)
    exposure_rate = _check_prob('exposure_rate', exposure_rate)
    choice_rate = _check_prob('choice_rate', choice_rate)
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) \
            or noise < 0:
        raise ValueError(f"make_synthetic: 'noise' must be a non-negative "
                         f"float (got {noise!r})")
    test_ratio = _check_prob('test_ratio', test_ratio, high_open=True)
    valid_ratio = _check_prob('valid_ratio', valid_ratio, high_open=True)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"make_synthetic: 'seed' must be an int "
                        f"(got {seed!r})")
    gen = torch.Generator().manual_seed(seed)

    def rand(*size: int) -> Tensor:
        return torch.rand(*size, generator=gen)

    # Attributes ############################################################
    genre_pop = _zipf(G, 0.8, gen)
    creator_pop = _zipf(C, 0.8, gen)
    main_genre = torch.multinomial(genre_pop, C, True, generator=gen)
    main_era = torch.randint(0, R, (C, ), generator=gen)

    item_creator = torch.multinomial(creator_pop.sqrt(), I, True,
                                     generator=gen)
    item_genre = torch.where(
        rand(I) < 0.8, main_genre[item_creator],
        torch.multinomial(genre_pop, I, True, generator=gen))
    item_era = torch.where(
        rand(I) < 0.7, main_era[item_creator],
        torch.randint(0, R, (I, ), generator=gen))
    # Optional second genre and second creator:
    genre2 = torch.multinomial(genre_pop, I, True, generator=gen)
    has_genre2 = (rand(I) < 0.3) & (genre2 != item_genre)
    creator2 = torch.randint(0, C, (I, ), generator=gen)
    has_creator2 = (rand(I) < 0.1) & (creator2 != item_creator)

    items = torch.arange(I)
    # Incidence matrices attribute x item:
    A_genre = torch.zeros(G, I, dtype=torch.bool)
    A_genre[item_genre, items] = True
    A_genre[genre2[has_genre2], items[has_genre2]] = True
    A_creator = torch.zeros(C, I, dtype=torch.bool)
    A_creator[item_creator, items] = True
    A_creator[creator2[has_creator2], items[has_creator2]] = True
    A_era = torch.zeros(R, I, dtype=torch.bool)
    A_era[item_era, items] = True

    # Likeable combinations #################################################
    # (genre, creator): a creator with its main genre; (genre, era): all.
    gc_items = A_genre[main_genre] & A_creator  # [C, I]
    gc_weight = creator_pop.clone()
    ge_genre = torch.arange(G).repeat_interleave(R)
    ge_era = torch.arange(R).repeat(G)
    ge_items = A_genre[ge_genre] & A_era[ge_era]  # [G * R, I]
    ge_weight = genre_pop[ge_genre] / R
    combo_items = torch.cat([gc_items, ge_items])  # [num_combos, I]
    # Items sharing one attribute with the combination:
    combo_near = torch.cat(
        [A_genre[main_genre] | A_creator, A_genre[ge_genre] | A_era[ge_era]])
    weight = torch.cat([gc_weight / gc_weight.sum(),
                        ge_weight / ge_weight.sum()])
    weight[combo_items.sum(dim=1) < min_match] = 0.0
    if float(weight.sum()) == 0.0:
        raise ValueError(f"make_synthetic: no attribute combination matches "
                         f"'min_combo_items' items (got "
                         f"min_combo_items={min_match}); lower it or use "
                         f"more items")

    # Users #################################################################
    combos = torch.multinomial(weight, U * kmax, True,
                               generator=gen).view(U, kmax)
    num_combos = torch.randint(kmin, kmax + 1, (U, 1), generator=gen)
    active = torch.arange(kmax).view(1, kmax) < num_combos  # [U, kmax]
    match = torch.zeros(U, I, dtype=torch.bool)
    near = torch.zeros(U, I, dtype=torch.bool)
    for k in range(kmax):  # a handful of combination slots, not users
        on = active[:, k:k + 1]
        match |= combo_items[combos[:, k]] & on
        near |= combo_near[combos[:, k]] & on

    exposed = near & (rand(U, I) < exposure_rate)
    chosen = match & (rand(U, I) < choice_rate)
    # Users left with too few items take all their matching items:
    few = chosen.sum(dim=1) < min_match
    chosen[few] = match[few]
    # Noise: popular items chosen without a liked combination.
    item_pop = creator_pop[item_creator] * genre_pop[item_genre]
    num_noise = torch.floor(noise * chosen.sum(dim=1).double() +
                            rand(U)).long()  # stochastic rounding
    max_noise = max(int(num_noise.max()), 1)
    noise_items = torch.multinomial(item_pop, U * max_noise, True,
                                    generator=gen).view(U, max_noise)
    noise_on = torch.arange(max_noise).view(1, -1) < num_noise.view(-1, 1)
    users = torch.arange(U).view(-1, 1).expand(U, max_noise)
    chosen[users[noise_on], noise_items[noise_on]] = True
    exposed |= chosen

    # Splits and KG #########################################################
    split = split_per_user(_csr_from_dense(chosen), test_ratio, gen)
    train, test = split.keep, split.held_out

    off_genre, off_creator, off_era = I, I + G, I + G + C
    num_entities = I + G + C + R
    g_i, g_e = A_genre.T.nonzero(as_tuple=True)
    c_i, c_e = A_creator.T.nonzero(as_tuple=True)
    kg = torch.cat([
        torch.stack([g_i, torch.full_like(g_i, 0), g_e + off_genre], dim=1),
        torch.stack([c_i, torch.full_like(c_i, 1), c_e + off_creator], dim=1),
        torch.stack([items, torch.full_like(items, 2), item_era + off_era],
                    dim=1),
        torch.stack([
            torch.arange(C) + off_creator,
            torch.full((C, ), 3, dtype=torch.long), main_genre + off_genre
        ], dim=1),
    ])
    entity_names: List[Optional[str]] = (
        [f'item:{i}' for i in range(I)] + [f'genre:{g}' for g in range(G)] +
        [f'creator:{c}' for c in range(C)] + [f'era:{r}' for r in range(R)])

    dataset = KGRecDataset(
        torch.stack([train.row_ids(), train.indices], dim=1),
        torch.stack([test.row_ids(), test.indices], dim=1),
        kg,
        num_users=U,
        num_items=I,
        num_entities=num_entities,
        num_relations=len(RELATION_NAMES),
        valid_ratio=valid_ratio,
        seed=seed,
        name='synthetic',
        relation_names=list(RELATION_NAMES),
        entity_names=entity_names,
    )
    dataset.exposed = _csr_from_dense(exposed & ~chosen)
    return dataset


def make_large_synthetic(
    num_interactions: int,
    draws_per_user: int = 56,
    test_ratio: float = 0.2,
    valid_ratio: float = 0.1,
    seed: int = 0,
) -> KGRecDataset:
    r"""A sparse synthetic dataset (:obj:`name='large_synthetic'`) of about
    :obj:`num_interactions` training interactions, for cost curves up to
    :math:`10^7` interactions and beyond.

    :func:`make_synthetic` builds dense ``users x items`` boolean matrices
    and draws ``users x items`` random numbers, so its memory grows with
    :math:`U \cdot I`, not with the interactions (at :math:`10^7`
    interactions each such matrix would be 89 GB). This generator never
    builds one: memory and time are O(interactions), everything is
    vectorised and a pure function of :obj:`seed` (one
    :class:`torch.Generator`).

    **Sizes.** Users, items, creators and genres scale together:
    :math:`U = \max(\lfloor N / 30 \rfloor, 10)` for
    :math:`N` = :obj:`num_interactions`, :math:`I = \max(\lfloor 0.8 U
    \rfloor, 10)` items, :math:`C = \max(\lfloor I / 10 \rfloor, 10)`
    creators, :math:`G = \max(\lfloor I / 100 \rfloor, 20)` genres and
    10 eras. With the default :obj:`draws_per_user` a user has about 31
    training interactions (after de-duplication and both splits), so
    train holds about :obj:`num_interactions` pairs (96% of them at
    :math:`10^5`, 99% at :math:`3 \cdot 10^5`). Below about :math:`10^4`
    there are so few items that repeated draws collide often and train is
    smaller (67% at 3,000). Other values of :obj:`draws_per_user` change
    the interactions per user, not the number of users.

    **Items and KG.** The same structure as :func:`make_synthetic`: every
    item has one creator (10% a second one), one genre (30% a second one)
    and one era, linked by the relations :obj:`genre`, :obj:`creator` and
    :obj:`era` (item :math:`\rightarrow` attribute); every creator has a
    main genre (relation :obj:`main_genre`, creator :math:`\rightarrow`
    genre). 80% of a creator's items are in its main genre and 70% in its
    main era. Creators and genres have Zipf-distributed popularity; about
    3.5 triples per item.

    **Users.** Every user likes three creators (popular ones more often)
    and makes :obj:`draws_per_user` draws: 75% are a random item of a liked
    creator, 25% a popular item (creator popularity times genre
    popularity). Repeated draws are merged, so no (user, item) pair occurs
    twice and every user has at least one item.

    **Splits.** Each user's items are split at random into train and test
    (:obj:`test_ratio`, rounded half up, at least one train item), then
    :class:`KGRecDataset` moves :obj:`valid_ratio` of train to validation.

    Entity ids: items :obj:`0..I-1`, then genres, creators and eras (no
    entity names, to stay O(interactions)).

    Args:
        num_interactions (int): About how many training interactions to
            make (at least :obj:`1`; tiny values still give 10 users and
            10 items).
        draws_per_user (int, optional): Item draws per user, before
            repeated draws are merged and the splits are made.
            (default: :obj:`56`)
        test_ratio (float, optional): Per-user share of test items, in
            :math:`[0, 1)`. (default: :obj:`0.2`)
        valid_ratio (float, optional): Per-user share of the training items
            moved to validation, in :math:`[0, 1)`. (default: :obj:`0.1`)
        seed (int, optional): Random seed. (default: :obj:`0`)
    """
    who = 'make_large_synthetic'
    N = _check_int('num_interactions', num_interactions, 1, who)
    M = _check_int('draws_per_user', draws_per_user, 1, who)
    test_ratio = _check_prob('test_ratio', test_ratio, True, who)
    valid_ratio = _check_prob('valid_ratio', valid_ratio, True, who)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{who}: 'seed' must be an int (got {seed!r})")
    U = max(N // 30, 10)
    I = max(int(0.8 * U), 10)  # noqa: E741
    C, G, R = max(I // 10, 10), max(I // 100, 20), 10
    gen = torch.Generator().manual_seed(seed)

    def rand(n: int) -> Tensor:
        return torch.rand(n, generator=gen)

    # Attributes ############################################################
    genre_pop, creator_pop = _zipf(G, 0.8, gen), _zipf(C, 0.8, gen)
    main_genre = _draw(genre_pop, C, gen)
    main_era = torch.randint(0, R, (C, ), generator=gen)
    item_creator = _draw(creator_pop.sqrt(), I, gen)
    item_genre = torch.where(rand(I) < 0.8, main_genre[item_creator],
                             _draw(genre_pop, I, gen))
    item_era = torch.where(rand(I) < 0.7, main_era[item_creator],
                           torch.randint(0, R, (I, ), generator=gen))
    genre2 = _draw(genre_pop, I, gen)
    has_genre2 = (rand(I) < 0.3) & (genre2 != item_genre)
    creator2 = torch.randint(0, C, (I, ), generator=gen)
    has_creator2 = (rand(I) < 0.1) & (creator2 != item_creator)

    # KG ####################################################################
    items = torch.arange(I)
    off_genre, off_creator, off_era = I, I + G, I + G + C
    g_i = torch.cat([items, items[has_genre2]])
    g_e = torch.cat([item_genre, genre2[has_genre2]])
    c_i = torch.cat([items, items[has_creator2]])
    c_e = torch.cat([item_creator, creator2[has_creator2]])
    kg = torch.cat([
        torch.stack([g_i, torch.zeros_like(g_i), g_e + off_genre], dim=1),
        torch.stack([c_i, torch.ones_like(c_i), c_e + off_creator], dim=1),
        torch.stack([items, torch.full_like(items, 2), item_era + off_era],
                    dim=1),
        torch.stack([
            torch.arange(C) + off_creator,
            torch.full((C, ), 3, dtype=torch.long), main_genre + off_genre
        ], dim=1),
    ])

    # Users #################################################################
    # Items of each creator (first creator only), as a CSR:
    order = torch.argsort(item_creator, stable=True)
    deg = torch.bincount(item_creator, minlength=C)
    ptr = torch.zeros(C + 1, dtype=torch.long)
    ptr[1:] = deg.cumsum(0)
    liked = _draw(creator_pop, U * 3, gen).view(U, 3)
    users = torch.arange(U).repeat_interleave(M)
    slot = torch.randint(0, 3, (U * M, ), generator=gen)
    c = liked[users, slot]
    r = torch.rand(U * M, generator=gen, dtype=torch.float64)
    within = ptr[c] + (r * deg[c]).long()
    item_pop = creator_pop[item_creator] * genre_pop[item_genre]
    popular = _draw(item_pop, U * M, gen)
    use_creator = (rand(U * M) < 0.75) & (deg[c] > 0)
    picked = torch.where(use_creator, order[within.clamp_(max=I - 1)],
                         popular)

    # Splits ################################################################
    split = split_per_user(UserItemCSR.from_pairs(users, picked, U, I),
                           test_ratio, gen)
    train, test = split.keep, split.held_out
    return KGRecDataset(
        torch.stack([train.row_ids(), train.indices], dim=1),
        torch.stack([test.row_ids(), test.indices], dim=1),
        kg,
        num_users=U,
        num_items=I,
        num_entities=I + G + C + R,
        num_relations=len(RELATION_NAMES),
        valid_ratio=valid_ratio,
        seed=seed,
        name='large_synthetic',
        relation_names=list(RELATION_NAMES),
    )
