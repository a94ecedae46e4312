r"""What the KGAT readers' errors and counts say, to the letter: the function
each message names, the file and line it points at, the bounds it is given,
and the edges of the counting rules (``max_ids=1``, a single pair, an empty
test file, a test item beyond every training item).

The folders are the tiny one of :func:`kgat_dir` (``conftest.py``) with one
file replaced::

    u0 --- i0, i1      ... i2             i0 -0-> e4 <-0- i1
    u1 --- i1, i2, i3  ... i0             i2 -0-> e5 <-0- i3
    u2 --- i0, i3      ... i1             i0 -1-> i1
                                          e4 -1-> e5 -1-> i3
"""
import builtins
import re

import numpy as np
import pytest

from kgsampler.data import (read_interactions, read_kg, read_kgat,
                            read_name_list)


def rows(t):
    return {tuple(r) for r in t.tolist()}


def raises_on(tmp_path, name, text, reader, match, **kwargs):
    """Writes ``text`` to ``tmp_path / name`` and checks that ``reader``
    raises a ``ValueError`` matching ``match`` on it."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        reader(path, **kwargs)


# --- which function the message names ------------------------------------

@pytest.mark.parametrize('fname', ['train.txt', 'test.txt'])
def test_interaction_files_of_a_folder_are_named_as_read_interactions(
        make_kgat, fname):
    folder = make_kgat({fname: '0 2\n1 x\n'})
    with pytest.raises(ValueError, match=r"^read_interactions: '.*"
                       + re.escape(fname) + r"', line 2: expected integer"):
        read_kgat(folder)


@pytest.mark.parametrize('fname,text,what', [
    ('train.txt', '0 0 1\n1 1 2 3\n2 0 7\n', 'item id 7'),
    ('test.txt', '0 2\n1 0\n9 1\n', 'user id 9'),
])
def test_folder_passes_max_ids_to_interaction_files(make_kgat, fname, text,
                                                    what):
    # ids up to 9 are fine by default; the folder's bound reaches each file
    folder = make_kgat({fname: text, 'kg_final.txt': '0 0 4\n7 1 4\n'})
    read_kgat(folder)
    with pytest.raises(ValueError, match=r"^read_interactions: '.*"
                       + re.escape(fname) + rf"', line \d: {what} implies"):
        read_kgat(folder, max_ids=7)


def test_folder_errors_are_named_as_read_kgat(make_kgat, tmp_path):
    with pytest.raises(ValueError, match=r"^read_kgat: 'max_ids' must be a "
                       r"positive int \(got 0\)"):
        read_kgat(make_kgat({}), max_ids=0)
    with pytest.raises(FileNotFoundError, match=r"^read_kgat: folder"):
        read_kgat(tmp_path / 'nowhere')
    with pytest.raises(ValueError, match=r"^read_kgat: '.*test\.txt', "
                       r"line 1: test item 7"):
        read_kgat(make_kgat({'test.txt': '0 7\n'}))


def test_name_list_errors_are_named_as_read_name_list(tmp_path):
    path = tmp_path / 'names.txt'
    with pytest.raises(FileNotFoundError, match=r"^read_name_list: file "):
        read_name_list(path)
    path.write_text('a 0\nb 5\n')
    with pytest.raises(ValueError, match=r"^read_name_list: 'max_ids'"):
        read_name_list(path, max_ids=-1)
    with pytest.raises(ValueError, match=r"^read_name_list: '.*names\.txt', "
                       r"line 2: listed id 5"):
        read_name_list(path, max_ids=5)


def test_kg_bound_names_the_head_entity(tmp_path):
    raises_on(tmp_path, 'kg_final.txt', '0 0 1\n8 0 1\n', read_kg,
              r"^read_kg: '.*', line 2: head entity id 8 implies 9 of them, "
              r"more than max_ids=8", max_ids=8)


@pytest.mark.parametrize('fname', ['entity_list.txt', 'relation_list.txt'])
def test_folder_passes_max_ids_to_name_lists(make_kgat, fname):
    folder = make_kgat({fname: 'a 0\nb 7\n'})
    with pytest.raises(ValueError, match=re.escape(fname) + r"', line 2: "
                       r"listed id 7 implies 8 of them, more than max_ids=7"):
        read_kgat(folder, max_ids=7)


def test_extension_warning_names_the_whole_path(make_kgat):
    folder = make_kgat({'entity_list.txt': 'x 0\nz 7\n'})
    with pytest.warns(UserWarning, match=re.escape(
            f"'{folder / 'entity_list.txt'}' names ids up to 7")):
        read_kgat(folder)


# --- the line a message points at ----------------------------------------

@pytest.mark.parametrize('text', [
    '0 1\n0 x 1\n', '0 1\n0 99999999999999999999 1\n',
], ids=['a bad byte later', 'an int64 overflow later'])
def test_first_bad_line_wins(tmp_path, text):
    # line 1 has two columns: it is reported, not the later problem
    raises_on(tmp_path, 'kg_final.txt', text, read_kg,
              r"line 1: expected 3 columns \(got 2: '0 1'\)")


def test_unknown_test_item_on_the_earliest_line(make_kgat):
    # sorted by (user, item), user 0's pair comes first; line 1 is user 1's
    folder = make_kgat({'test.txt': '1 8\n0 7\n2 1\n'})
    with pytest.raises(ValueError, match=r"test\.txt', line 1: test item 8 "
                       r"\(of user 1\) .*\(2 such test pairs in all\)"):
        read_kgat(folder)


def test_single_test_pair_keeps_its_line(make_kgat):
    folder = make_kgat({'test.txt': '\n\n2 6\n'})
    with pytest.raises(ValueError, match=r"test\.txt', line 3: test item 6"):
        read_kgat(folder)


def test_name_list_duplicate_among_many(tmp_path):
    # 1001 lines in shuffled order, id 3 on two of them: the later line is
    # the one reported, whatever the order the ids sort in
    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.permutation(1000)]
    ids.insert(500, 3)
    first = ids.index(3) + 1
    second = len(ids) - ids[::-1].index(3)
    raises_on(tmp_path, 'names.txt', ''.join(f'n{i} {i}\n' for i in ids),
              read_name_list,
              rf"line {second}: id 3 is already used on line {first}$")


def test_name_list_duplicate_of_a_larger_id(tmp_path):
    raises_on(tmp_path, 'names.txt', 'a 0\nb 5\nc 5\n', read_name_list,
              r"line 3: id 5 is already used on line 2")


# --- the rules' edges ------------------------------------------------------

def test_max_ids_of_one(make_kgat, tmp_path):
    folder = make_kgat({'train.txt': '0 0\n', 'test.txt': '0 0\n',
                        'kg_final.txt': '0 0 0\n', 'entity_list.txt': 'a 0\n',
                        'relation_list.txt': 'r 0\n'})
    files = read_kgat(folder, max_ids=1)
    assert (files.num_users, files.num_items, files.num_entities,
            files.num_relations) == (1, 1, 1, 1)
    path = tmp_path / 'one.txt'
    path.write_text('0 0\n')
    assert read_interactions(path, max_ids=1).tolist() == [[0, 0]]
    assert read_name_list(folder / 'entity_list.txt', max_ids=1) == ['a']


def test_test_item_known_from_train_only(make_kgat):
    # item 3 is a training item of u1 and u2 and nowhere in the KG
    folder = make_kgat({'kg_final.txt': '0 0 4\n1 1 4\n',
                        'test.txt': '0 3\n'})
    files = read_kgat(folder)
    assert rows(files.test) == {(0, 3)}


def test_test_file_without_pairs(make_kgat):
    files = read_kgat(make_kgat({'test.txt': '0\n4\n'}))
    assert files.test.shape == (0, 2)
    assert (files.num_users, files.num_items) == (5, 4)


@pytest.mark.parametrize('test', ['0 5\n', '0 5\n1 0\n'])
def test_test_item_beyond_every_training_item(make_kgat, test):
    # item 5 is a KG entity (e5); as a test item it makes 6 items
    files = read_kgat(make_kgat({'test.txt': test}))
    assert files.num_items == 6
    assert (0, 5) in rows(files.test)


@pytest.mark.parametrize('text,got', [
    ('org_id remap_id\nfreebase_id\na 0\n', 'freebase_id'),  # one header only
    ('a 0\n7\n', '7'),  # a lone id is not a name
])
def test_name_list_line_without_name_and_id(tmp_path, text, got):
    raises_on(tmp_path, 'names.txt', text, read_name_list,
              rf"line 2: expected 'name id' \(got '{got}'\)")


def test_name_list_keeps_undecodable_bytes(tmp_path):
    path = tmp_path / 'names.txt'
    path.write_bytes(b'caf\xe9 0\nb 1\n')
    assert read_name_list(path) == ['caf\ufffd', 'b']


def test_name_list_too_large_for_memory(tmp_path):
    path = tmp_path / 'names.txt'
    path.write_text('a 0\nb 100000000000000000\n')
    with pytest.raises(ValueError, match=r"line 2: id 100000000000000000 is "
                       r"too large \(a list of 100000000000000001 names does "
                       r"not fit into memory\)"):
        read_name_list(path, max_ids=10**18)


def test_unreadable_file_keeps_errno_and_filename(make_kgat, monkeypatch):
    folder = make_kgat({})
    real = builtins.open

    def deny(path, *args, **kwargs):
        if str(path).endswith('train.txt'):
            raise PermissionError(13, 'Permission denied', str(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(builtins, 'open', deny)
    with pytest.raises(PermissionError) as info:
        read_kgat(folder)
    assert info.value.errno == 13
    assert info.value.filename == str(folder / 'train.txt')
    assert info.value.strerror == (f"read_interactions: cannot read "
                                   f"'{folder / 'train.txt'}': Permission "
                                   f"denied")
