import re
import warnings

import numpy as np
import pytest
import torch

from kgsampler.data import (read_interactions, read_kg, read_kgat,
                            read_name_list)


def rows(t):
    return {tuple(r) for r in t.tolist()}


def test_read_kgat(kgat_dir, tiny):
    files = read_kgat(kgat_dir)
    assert (files.num_users, files.num_items) == (3, 4)
    assert (files.num_entities, files.num_relations) == (6, 2)
    assert files.train.dtype == files.test.dtype == files.kg.dtype == \
        torch.long
    assert files.kg.shape == (7, 3)
    assert rows(files.train) == tiny['train']
    assert rows(files.test) == tiny['test']
    assert rows(files.kg) == tiny['kg']
    assert files.relation_names == ['genre', 'similar to']
    assert files.entity_names == ['book_a', 'book_b', 'book_c', 'book_d',
                                  'm.0e']


@pytest.mark.parametrize('newline', ['\r\n', '\r'])
def test_crlf_tabs_and_blank_lines(make_kgat, tiny, newline):
    crlf = read_kgat(make_kgat(newline=newline, name='crlf'))
    assert rows(crlf.train) == tiny['train']
    assert rows(crlf.test) == tiny['test']
    assert rows(crlf.kg) == tiny['kg']
    assert crlf.relation_names == ['genre', 'similar to']

    folder = make_kgat({
        'train.txt': '\n0\t0 1\n\n1 1  2 3   \n2 0 3\n\n',
        'kg_final.txt': '0\t0\t4\n1 0 4\n\n2 0 5\n3 0 5\n0 1 1\n4 1 5\n'
                        '5 1 3',  # no final newline
    }, name='tabs')
    files = read_kgat(folder)
    assert rows(files.train) == tiny['train']
    assert rows(files.kg) == tiny['kg']


def test_user_without_items(make_kgat):
    files = read_kgat(make_kgat({'test.txt': '0 2\n1 0\n2 1\n3\n'}))
    assert files.num_users == 4  # user 3 has a line but no item
    assert files.test.size(0) == 3


def test_optional_name_lists(make_kgat):
    files = read_kgat(make_kgat({'relation_list.txt': None,
                                 'entity_list.txt': None}))
    assert files.relation_names is None and files.entity_names is None
    assert files.num_relations == 2


def test_name_list_extends_counts(make_kgat):
    folder = make_kgat({
        'relation_list.txt': 'a 0\nb 1\nc 2\n',
        'entity_list.txt': 'x 0\nz 7\n',
    })
    with pytest.warns(UserWarning) as record:
        files = read_kgat(folder)
    msgs = [str(w.message) for w in record]
    assert any("entity_list.txt' names ids up to 7, beyond the 6" in m
               for m in msgs)
    assert any("relation_list.txt' names ids up to 2, beyond the 2" in m
               for m in msgs)
    assert files.num_relations == 3
    assert files.num_entities == 8
    assert files.entity_names == ['x'] + [None] * 6 + ['z']


@pytest.mark.parametrize('fname,text,line,what', [
    ('kg_final.txt', '0 0 4\n1 0 4\n1 0 x\n', 3, "token 'x'"),
    ('kg_final.txt', '0 0 4\n1 0 4\n1 0 4.5\n', 3, "token '4.5'"),
    ('kg_final.txt', '0 0 4\n1 0\n', 2, 'expected 3 columns'),
    ('kg_final.txt', '0 0 4\n\n1 0 4 4\n', 3, 'expected 3 columns'),
    ('kg_final.txt', '0 0 4\n1 -1 4\n', 2, 'non-negative'),
    ('train.txt', '0 0 1\n1 -2\n', 2, 'non-negative'),
    ('train.txt', '0 0 1\n1 +2\n', 2, "token '\\+2'"),
    ('train.txt', '0 0 1\n\n\n1 1_0\n', 4, "token '1_0'"),
    ('train.txt', '0 0 99999999999999999999\n', 1, 'int64'),
    ('test.txt', '0 2\n1 0\n2 one\n', 3, "token 'one'"),
])
def test_errors_name_file_and_line(make_kgat, fname, text, line, what):
    folder = make_kgat({fname: text})
    pattern = re.escape(f"{fname}', line {line}:") + f'.*{what}'
    with pytest.raises(ValueError, match=pattern):
        read_kgat(folder)


@pytest.mark.parametrize('fname', ['train.txt', 'test.txt', 'kg_final.txt'])
@pytest.mark.parametrize('text', ['', '\n\n  \r\n'])
def test_empty_file(make_kgat, fname, text):
    with pytest.raises(ValueError, match=f"{fname}' holds no data lines"):
        read_kgat(make_kgat({fname: text}))


def test_train_without_pairs(make_kgat):
    with pytest.raises(ValueError, match="train.txt' holds no"):
        read_kgat(make_kgat({'train.txt': '0\n1\n'}))


def test_unseen_test_item(make_kgat):
    # Item 7 is neither in train.txt nor anywhere in kg_final.txt:
    folder = make_kgat({'test.txt': '0 2\n\n1 0\n2 1 7\n'})
    with pytest.raises(ValueError,
                       match=r"test\.txt', line 4: test item 7 \(of user 2\)"):
        read_kgat(folder)


def test_test_item_known_from_kg_only(make_kgat):
    # Item 2 is in no training line, but in the KG (i2 -genre-> e5):
    files = read_kgat(make_kgat({'train.txt': '0 0 1\n1 1 3\n2 0 3\n'}))
    assert (0, 2) in rows(files.test)


def test_duplicates_are_counted(make_kgat, tiny):
    folder = make_kgat({
        'train.txt': '0 0 1 1\n1 1 2 3\n2 0 3\n0 0\n',
        'kg_final.txt': '0 0 4\n0 0 4\n1 0 4\n2 0 5\n3 0 5\n0 1 1\n4 1 5\n'
                        '5 1 3\n',
    })
    with pytest.warns(UserWarning) as record:
        files = read_kgat(folder)
    messages = [str(w.message) for w in record]
    assert any(re.search(r"removed 2 duplicate user-item pairs from '.*"
                         r"train\.txt'", m) for m in messages)
    assert any(re.search(r"removed 1 duplicate triples from '.*"
                         r"kg_final\.txt'", m) for m in messages)
    assert rows(files.train) == tiny['train']
    assert rows(files.kg) == tiny['kg']


def test_no_warning_without_duplicates(kgat_dir):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        read_kgat(kgat_dir)


def test_missing_files(make_kgat, tmp_path):
    folder = make_kgat({'kg_final.txt': None})
    with pytest.raises(FileNotFoundError,
                       match=r"'kg_final\.txt' not found in folder '.*tiny'"):
        read_kgat(folder)
    with pytest.raises(FileNotFoundError, match='nowhere'):
        read_kgat(tmp_path / 'nowhere')


def test_single_file_readers(kgat_dir, tiny):
    pairs = read_interactions(kgat_dir / 'train.txt')
    assert pairs.shape == (7, 2) and rows(pairs) == tiny['train']
    assert pairs.tolist()[:2] == [[0, 0], [0, 1]]  # sorted by (user, item)
    kg = read_kg(kgat_dir / 'kg_final.txt')
    assert kg.tolist()[0] == [0, 0, 4]
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        read_kg(kgat_dir / 'missing.txt')


def test_bom_is_ignored(make_kgat, tiny):
    folder = make_kgat()
    (folder / 'train.txt').write_bytes(b'\xef\xbb\xbf0 0 1\n1 1 2 3\n2 0 3\n')
    assert rows(read_kgat(folder).train) == tiny['train']


def test_name_list_rules(tmp_path):
    path = tmp_path / 'names.txt'
    path.write_text('org_id remap_id\nfilm.genre 1\nthe big one 0\n\n'
                    'org7 3 m.07\n')
    assert read_name_list(path) == ['the big one', 'film.genre', None,
                                    'org7']

    path.write_text('org_id remap_id\nfilm.genre 0\nno_id_here\n')
    with pytest.raises(ValueError, match=r"names\.txt', line 3: expected "
                       r"'name id'"):
        read_name_list(path)

    path.write_text('a 0\nb 1\nc 0\n')
    with pytest.raises(ValueError, match=r"names\.txt', line 3: id 0 is "
                       r"already used on line 1"):
        read_name_list(path)

    path.write_text('a -1\n')
    with pytest.raises(ValueError, match=r"line 1: ids must be non-negative"):
        read_name_list(path)

    path.write_text('org_id remap_id\n')
    with pytest.raises(ValueError, match='holds no'):
        read_name_list(path)


def test_name_list_id_too_large(tmp_path):
    path = tmp_path / 'entity_list.txt'
    path.write_text('a 0\nm.b 100000000000000\n')
    with pytest.raises(ValueError, match=r"entity_list.txt', line 2: listed "
                                         r"id 100000000000000 implies "
                                         r"100,000,000,000,001 of them, more "
                                         r"than max_ids=10,000,000"):
        read_name_list(path)
    path.write_text('a 0\nb 5\n')
    with pytest.raises(ValueError, match=r"line 2: listed id 5 implies 6 of "
                                         r"them, more than max_ids=5"):
        read_name_list(path, max_ids=5)
    assert read_name_list(path, max_ids=6) == ['a', None, None, None, None,
                                               'b']


@pytest.mark.parametrize('file,content,match', [
    ('train.txt', '0 0 1\n1 1 1000000000\n',
     r"train.txt', line 2: item id 1000000000 implies 1,000,000,001 of them"),
    ('train.txt', '0 0 1\n9223372036854775807 1\n',
     r"train.txt', line 2: user id 9223372036854775807 implies"),
    ('kg_final.txt', '0 0 4\n1 0 100000000000\n',
     r"kg_final.txt', line 2: tail entity id 100000000000 implies"),
    ('kg_final.txt', '0 0 4\n1 10000000000 4\n',
     r"kg_final.txt', line 2: relation id 10000000000 implies"),
    ('test.txt', '0 2\n10000000 1\n',
     r"test.txt', line 2: user id 10000000 implies 10,000,001 of them, more "
     r"than max_ids=10,000,000"),
])
def test_huge_ids_are_refused_before_allocating(make_kgat, file, content,
                                                match):
    folder = make_kgat({file: content})
    with pytest.raises(ValueError, match=match):
        read_kgat(folder)


def test_max_ids_is_configurable(make_kgat):
    folder = make_kgat({})  # the tiny folder: ids up to 5 (6 entities)
    with pytest.raises(ValueError, match=r"kg_final.txt', line \d+: tail "
                                         r"entity id 5 implies 6 of them, "
                                         r"more than max_ids=5"):
        read_kgat(folder, max_ids=5)
    assert read_kgat(folder, max_ids=6).num_entities == 6
    with pytest.raises(ValueError, match=r"'max_ids' must be a positive int "
                                         r"\(got 0\)"):
        read_kgat(folder, max_ids=0)
    from kgsampler.data import KGRecDataset
    with pytest.raises(ValueError, match=r"more than max_ids=5"):
        KGRecDataset.from_kgat(folder, max_ids=5)
    ds = KGRecDataset.from_kgat(folder, max_ids=np.int64(6), seed=np.int32(3))
    assert ds.num_entities == 6 and ds.seed == 3


def test_user_without_possible_negative_is_reported_by_line(make_kgat):
    from kgsampler.data import KGRecDataset
    # items 0..3; user 1 (line 2) has all four as training positives
    folder = make_kgat({'train.txt': '0 0 1\n1 0 1 2 3\n2 0 3\n'})
    with pytest.raises(ValueError, match=r"train.txt', line 2: user 1 has "
                                         r"all 4 items as training "
                                         r"positives .* \(1 such users"):
        KGRecDataset.from_kgat(folder, valid_ratio=0.0)
    # with a validation split, one of its items becomes a possible negative
    assert KGRecDataset.from_kgat(folder, valid_ratio=0.3).num_users == 3


def test_unreadable_file_names_its_path(make_kgat, monkeypatch):
    import builtins
    folder = make_kgat({})
    real = builtins.open

    def deny(path, *args, **kwargs):
        if str(path).endswith('kg_final.txt'):
            raise PermissionError(13, 'Permission denied')
        return real(path, *args, **kwargs)
    monkeypatch.setattr(builtins, 'open', deny)
    with pytest.raises(PermissionError) as info:
        read_kgat(folder)
    # also in repr(), which is what Hydra's instantiate shows
    assert f"cannot read '{folder}/kg_final.txt': Permission denied" in \
        repr(info.value)
