"""The malformed-dataset corpus (``tests/data/malformed/``); the property
test of the reader is in ``test_reliability_property.py``.

Each case folder holds the files that differ from the tiny base folder
below (``NAME.absent`` removes ``NAME``) and ``expected.txt``: its first
line is the exception type (or ``ok``), the second a regular expression
the message must contain; for ``ok``, lines ``warning: REGEX`` (a warning
that must be emitted) or ``KEY: VALUE`` (a :meth:`statistics` entry)."""
import re
import shutil
import warnings
from pathlib import Path

import pytest

from kgsampler.data.dataset import KGRecDataset

CORPUS = Path(__file__).parent / 'data' / 'malformed'
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())

#: The base folder::
#:
#:     u0 --- i0, i1      ... i2        i0 -0-> e4 <-0- i1
#:     u1 --- i1, i2, i3  ... i0        i2 -0-> e5 <-0- i3
#:     u2 --- i0, i3      ... i1        i0 -1-> i1,  e4 -1-> e5 -1-> i3
BASE = {
    'train.txt': b'0 0 1\n1 1 2 3\n2 0 3\n',
    'test.txt': b'0 2\n1 0\n2 1\n',
    'kg_final.txt': b'0 0 4\n1 0 4\n2 0 5\n3 0 5\n0 1 1\n4 1 5\n5 1 3\n',
    'relation_list.txt': b'org_id remap_id\ngenre 0\nsimilar to 1\n',
    'entity_list.txt': b'org_id remap_id\nbook_a 0\nbook_b 1\nbook_c 2\n'
                       b'book_d 3\nm.0e 4\n',
}


def build(case: str, root: Path) -> Path:
    folder = root / case
    folder.mkdir()
    for name, data in BASE.items():
        (folder / name).write_bytes(data)
    for f in (CORPUS / case).iterdir():
        if f.name == 'expected.txt':
            continue
        if f.name.endswith('.absent'):
            (folder / f.name[:-len('.absent')]).unlink()
        else:
            shutil.copy(f, folder / f.name)
    return folder


def test_the_corpus_is_large_enough():
    errors = [c for c in CASES if not (CORPUS / c / 'expected.txt')
              .read_text().startswith('ok')]
    assert len(CASES) >= 30 and len(errors) >= 30


@pytest.mark.parametrize('case', CASES)
def test_malformed_dataset(case, tmp_path):
    kind, *rest = (CORPUS / case / 'expected.txt').read_text().splitlines()
    folder = build(case, tmp_path)
    if kind != 'ok':
        with pytest.raises(Exception) as info:
            KGRecDataset.from_kgat(folder)
        assert type(info.value).__name__ == kind, info.value
        assert re.search(rest[0], str(info.value)), str(info.value)
        # the message names the file it is about, by its full path
        assert str(folder) in str(info.value)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        ds = KGRecDataset.from_kgat(folder)
    messages = [str(w.message) for w in caught]
    for line in rest:
        key, _, value = line.partition(': ')
        if key == 'warning':
            assert any(re.search(value, m) for m in messages), messages
        else:
            assert str(ds.statistics()[key]) == value
