"""Column counts of ``kg_final.txt``: every non-blank line holds exactly one
``head relation tail`` triple.

The token totals of the rejected files are multiples of 3, so that a reader
which only reshaped all tokens into rows of three would accept them
silently (e.g. ``'0 0\\n4 1\\n0 4\\n'`` as the triples ``(0, 0, 4)`` and
``(1, 0, 4)``): only a per-line count rejects them."""
import re

import pytest
import torch

from kgsampler.data.kgat import read_interactions, read_kg, read_kgat


@pytest.mark.parametrize('text,line,got,content', [
    ('0 0\n4 1\n0 4\n', 1, 2, '0 0'),  # three short lines
    ('0 0 4 1\n0 4\n', 1, 4, '0 0 4 1'),  # too many, then too few
    ('0 0 4\n1 0 4 2 3 5\n', 2, 6, '1 0 4 2 3 5'),  # two triples on a line
    ('0 0 4 1 0 4\n', 1, 6, '0 0 4 1 0 4'),  # a single line of two triples
    ('0 0 4\n1 0\n4 5 6 7\n', 2, 2, '1 0'),  # short, then long
    ('0 0 4\n\n1 0\n4\n', 3, 2, '1 0'),  # a triple split over two lines
    ('0 0 4\r\n1 0\r\n4\r\n', 2, 2, '1 0'),  # the same with CR LF
    ('1 0 4\n2 0 5\n3\n0 5 0\n1 1\n', 3, 1, '3'),
])
def test_wrong_column_count_is_rejected(make_kgat, text, line, got, content):
    assert len(text.split()) % 3 == 0  # a reshape alone would accept it
    folder = make_kgat({'kg_final.txt': text})
    pattern = (re.escape(f"kg_final.txt', line {line}: expected 3 columns "
                         f"(got {got}: '{content}')"))
    with pytest.raises(ValueError, match=pattern):
        read_kgat(folder)
    with pytest.raises(ValueError, match=r"^read_kg: .*" + pattern):
        read_kg(folder / 'kg_final.txt')


@pytest.mark.parametrize('text', [
    '0 0 4\n1 0 5\n',
    '\n0 0 4\n\n\n1 0 5',  # blank lines, no final newline
    '  0\t0  4 \n1 0 5\t\n',  # spaces and tabs around and between
    '0 0 4\r\n1 0 5\r\n',
])
def test_three_columns_with_blank_lines_and_spacing(tmp_path, text):
    path = tmp_path / 'kg_final.txt'
    path.write_bytes(text.encode())
    out = read_kg(path)
    assert out.dtype == torch.long
    assert out.tolist() == [[0, 0, 4], [1, 0, 5]]


# ------------------------------------------- the readers' exact messages
def write(tmp_path, text, name='f.txt'):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize('reader', [read_kg, read_interactions])
@pytest.mark.parametrize('text,line,what', [
    (b'0 0 \xff\n', 1, "expected integer ids (got the token '\ufffd')"),
    ('0 1 2\n3 x 4\n', 2, "expected integer ids (got the token 'x')"),
    ('0 1 2\n3 -4 5\n', 2, 'ids must be non-negative (got -4)'),
    ('0 1 2\n3 4 99999999999999999999\n', 2,
     'id does not fit into int64 (got 99999999999999999999)'),
    # INT64_MAX itself fits: the error is the token on line 2
    ('0 1 9223372036854775807\n1 0 y\n', 2,
     "expected integer ids (got the token 'y')"),
])
def test_reader_errors_name_the_reader_file_and_line(tmp_path, reader, text,
                                                     line, what):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match='^' + re.escape(
            f"{reader.__name__}: '{path}', line {line}: {what}") + '$'):
        reader(path)


@pytest.mark.parametrize('reader', [read_kg, read_interactions])
def test_reader_file_errors(tmp_path, reader):
    name = reader.__name__
    missing = tmp_path / 'missing.txt'
    with pytest.raises(FileNotFoundError, match='^' + re.escape(
            f"{name}: file '{missing}' not found") + '$'):
        reader(missing)
    empty = write(tmp_path, '\n \n')
    with pytest.raises(ValueError, match='^' + re.escape(
            f"{name}: '{empty}' holds no data lines (got an empty file)")):
        reader(empty)
    for bad in (0, -1, True, 2.0, '5'):
        with pytest.raises(ValueError, match=rf"^{name}: 'max_ids' must be a "
                                             rf"positive int \(got "):
            reader(write(tmp_path, '0 0 1\n'), max_ids=bad)


def test_max_ids_bound(tmp_path):
    path = write(tmp_path, '0 0 1\n1 0 4\n')
    assert read_kg(path, max_ids=5).tolist() == [[0, 0, 1], [1, 0, 4]]
    with pytest.raises(ValueError, match=re.escape(
            f"read_kg: '{path}', line 2:") + r" tail entity id 4 implies 5 of them, "
            r"more than max_ids=4"):
        read_kg(path, max_ids=4)
    pairs = write(tmp_path, '0 3\n2 1\n', 'train.txt')
    assert read_interactions(pairs, max_ids=4).tolist() == [[0, 3], [2, 1]]
    with pytest.raises(ValueError, match=re.escape(
            f"read_interactions: '{pairs}', line 1:") + r" item id 3 implies "
            r"4 of them, more than max_ids=3"):
        read_interactions(pairs, max_ids=3)


def test_duplicate_warning_points_at_the_caller(tmp_path):
    # (deselected by benchmarks/mutation.sh: mutmut's trampolines add a frame per call)
    path = write(tmp_path, '1 0 4\n1 0 4\n')
    with pytest.warns(UserWarning, match='duplicate') as w:
        read_kg(path)
    assert w[0].filename == __file__


def test_duplicates_are_removed_with_a_warning(tmp_path):
    path = write(tmp_path, '1 0 4\n0 0 4\n1 0 4\n1 0 4\n')
    with pytest.warns(UserWarning, match='^' + re.escape(
            f"read_kg: removed 2 duplicate triples from '{path}'") + '$'):
        out = read_kg(path)
    assert out.tolist() == [[0, 0, 4], [1, 0, 4]]
    pairs = write(tmp_path, '0 1 1 2\n', 'train.txt')
    with pytest.warns(UserWarning, match='^' + re.escape(
            f"read_interactions: removed 1 duplicate user-item pairs from "
            f"'{pairs}'") + '$'):
        assert read_interactions(pairs).tolist() == [[0, 1], [0, 2]]


def test_max_ids_bound_on_a_single_token(tmp_path):
    """A user line without items still names a user id, checked too."""
    path = write(tmp_path, '7\n', 'train.txt')
    with pytest.raises(ValueError, match=re.escape(
            f"read_interactions: '{path}', line 1: user id 7 implies 8 of "
            f"them, more than max_ids=5")):
        read_interactions(path, max_ids=5)
