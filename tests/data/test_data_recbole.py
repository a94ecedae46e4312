"""RecBole atomic files: token mapping, threshold, KG linking, splits and the
file:line errors."""
import pytest
import torch

from kgsampler.data.recbole import read_recbole

INTER = ('user_id:token\titem_id:token\trating:float\ttimestamp:float\n'
         'u1\tm1\t5\t1\n'
         'u1\tm2\t3\t2\n'
         'u1\tm3\t4\t3\n'
         'u2\tm2\t4\t4\n'
         'u2\tm3\t5\t5\n'
         'u2\tm2\t5\t6\n'  # a repeat counts once
         'u3\tm1\t4\t7\n'
         'u3\tm4\t4.5\t8\n')
LINK = ('item_id:token\tentity_id:token\n'
        'm1\tQ1\nm2\tQ2\nm3\tQ3\nm9\tQ9\n')  # m9 has no interactions
KG = ('head_id:token\trelation_id:token\ttail_id:token\n'
      'Q1\tdirected_by\tP1\n'
      'Q2\tdirected_by\tP1\n'
      'Q3\tgenre\tG1\n'
      'P1\tborn_in\tC1\n')


@pytest.fixture
def folder(tmp_path):
    r"""A tiny RecBole dataset ``toy`` (users u1..u3, movies m1..m4)::

        u1 - m1 (5)  m2 (3)  m3 (4)        Q1 --directed_by--> P1 --born_in--> C1
        u2 - m2 (4, 5)  m3 (5)             Q2 --directed_by--> P1
        u3 - m1 (4)  m4 (4.5)              Q3 --genre--------> G1
        links: m1-Q1, m2-Q2, m3-Q3, m9-Q9 (m9 unused); m4 has no entity
    """
    d = tmp_path / 'toy'
    d.mkdir()
    (d / 'toy.inter').write_text(INTER)
    (d / 'toy.link').write_text(LINK)
    (d / 'toy.kg').write_text(KG)
    return d


def all_pairs(ds):
    out = set()
    for csr in (ds.train_pos, ds.valid_pos, ds.test_pos):
        out |= set(zip(csr.row_ids().tolist(), csr.indices.tolist()))
    return out


@pytest.mark.parametrize('threshold,expected,below', [
    (None, {(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 0), (2, 3)}, 0),
    (4, {(0, 0), (0, 2), (1, 1), (1, 2), (2, 0), (2, 3)}, 1),
    (4.6, {(0, 0), (1, 1), (1, 2)}, 5),
])
def test_tokens_threshold_and_no_loss(folder, threshold, expected, below):
    ds = read_recbole(str(folder), rating_threshold=threshold,
                      test_ratio=0.0, valid_ratio=0.0)
    assert ds.user_tokens == ['u1', 'u2', 'u3']
    assert ds.item_tokens == ['m1', 'm2', 'm3', 'm4']
    assert all_pairs(ds) == expected
    assert ds.num_below_threshold == below


def test_kg_is_linked_to_items(folder):
    ds = read_recbole(str(folder), test_ratio=0.0, valid_ratio=0.0)
    assert ds.num_items == 4 and ds.num_entities == 4 + 3  # P1, G1, C1
    assert ds.entity_names[:4] == ['Q1', 'Q2', 'Q3', None]
    assert ds.relation_names == ['directed_by', 'genre', 'born_in']
    ent = {n: i for i, n in enumerate(ds.entity_names) if n}
    got = {tuple(t) for t in ds.kg.tolist()}
    assert got == {(0, 0, ent['P1']), (1, 0, ent['P1']), (2, 1, ent['G1']),
                   (ent['P1'], 2, ent['C1'])}
    assert ds.num_unused_links == 1


def test_without_kg(folder):
    (folder / 'toy.kg').unlink()
    ds = read_recbole(str(folder))
    assert ds.kg.shape == (0, 3) and ds.num_entities == ds.num_items == 4


@pytest.mark.parametrize('seed', [0, 1])
def test_splits_are_seeded_and_disjoint(folder, seed):
    a = read_recbole(str(folder), test_ratio=0.5, valid_ratio=0.0, seed=seed)
    b = read_recbole(str(folder), test_ratio=0.5, valid_ratio=0.0, seed=seed)
    assert torch.equal(a.test_pos.indices, b.test_pos.indices)
    train = set(zip(a.train_pos.row_ids().tolist(),
                    a.train_pos.indices.tolist()))
    test = set(zip(a.test_pos.row_ids().tolist(),
                   a.test_pos.indices.tolist()))
    assert not train & test and len(train | test) == 7
    assert (a.train_pos.degree() >= 1).all()  # everyone keeps a train item


@pytest.mark.parametrize('file,text,match', [
    ('toy.inter', 'user_id\titem_id:token\nu1\tm1\n',
     r"toy.inter', line 1: header fields must be 'name:type'"),
    ('toy.inter', 'user_id:token\trating:float\nu1\t3\n',
     r"toy.inter', line 1: no 'item_id' field"),
    ('toy.inter', 'user_id:token\titem_id:token\tuser_id:token\nu\tm\tu\n',
     r"line 1: the field 'user_id' appears twice"),
    ('toy.inter', 'user_id:token\titem_id:token\nu1\tm1\nu2\n',
     r"toy.inter', line 3: expected 2 tab-separated fields as in the header "
     r"\(got 1\)"),
    ('toy.inter', 'user_id:token\titem_id:token\nu1\t\n',
     r"toy.inter', line 2: the field 'item_id' is empty"),
    ('toy.link', 'item_id:token\tentity_id:token\nm1\tQ1\nm2\tQ1\n',
     r"toy.link', line 3: entity 'Q1' is already the entity of another"),
    ('toy.link', 'item_id:token\tentity_id:token\nm1\tQ1\nm1\tQ5\n',
     r"toy.link', line 3: item 'm1' is linked to a second entity"),
    ('toy.kg', 'head_id:token\ttail_id:token\nQ1\tP1\n',
     r"toy.kg', line 1: no 'relation_id' field"),
])
def test_file_line_errors(folder, file, text, match):
    (folder / file).write_text(text)
    with pytest.raises(ValueError, match=match):
        read_recbole(str(folder))


def test_argument_errors(folder):
    with pytest.raises(ValueError, match=r"toy.inter', line 3: the rating "
                       r"must be a number \(got 'x'\)"):
        (folder / 'toy.inter').write_text(
            'user_id:token\titem_id:token\trating:float\nu\tm\t4\nu\tn\tx\n')
        read_recbole(str(folder), rating_threshold=4)
    (folder / 'toy.inter').write_text('user_id:token\titem_id:token\nu\tm\n')
    with pytest.raises(ValueError, match=r"rating_threshold=4 but .* has no "
                       r"'rating' field"):
        read_recbole(str(folder), rating_threshold=4)
    with pytest.raises(ValueError, match=r"'test_ratio' must be a float in "
                       r"\[0, 1\) \(got 1.0\)"):
        read_recbole(str(folder), test_ratio=1.0)
    with pytest.raises(FileNotFoundError, match=r"'path' must be a folder"):
        read_recbole(str(folder / 'nowhere'))
    (folder / 'toy.link').unlink()
    with pytest.raises(FileNotFoundError, match=r"toy.kg' needs .*toy.link"):
        read_recbole(str(folder))
    with pytest.raises(FileNotFoundError, match=r"file '.*other.inter' not "
                       r"found"):
        read_recbole(str(folder), name='other')


def test_classmethod_is_the_reader(folder):
    from kgsampler import KGRecDataset
    a = KGRecDataset.from_recbole(str(folder), rating_threshold=4, seed=3)
    b = read_recbole(str(folder), rating_threshold=4, seed=3)
    assert torch.equal(a.train_pos.indices, b.train_pos.indices)
    assert torch.equal(a.kg, b.kg)
