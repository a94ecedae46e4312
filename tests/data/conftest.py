"""Tiny hand-drawn KGAT folders for the data tests."""
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest

TINY_FILES: Dict[str, str] = {
    'train.txt': '0 0 1\n1 1 2 3\n2 0 3\n',
    'test.txt': '0 2\n1 0\n2 1\n',
    'kg_final.txt': ('0 0 4\n1 0 4\n2 0 5\n3 0 5\n'
                     '0 1 1\n4 1 5\n5 1 3\n'),
    'relation_list.txt': 'org_id remap_id\ngenre 0\nsimilar to 1\n',
    'entity_list.txt': ('org_id remap_id freebase_id\n'
                        'book_a 0 m.0a\nbook_b 1 m.0b\nbook_c 2 m.0c\n'
                        'book_d 3 m.0d\nm.0e 4\n'),
}


@pytest.fixture
def make_kgat(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_kgat(files=None, newline='\\n', name='tiny')`` writes
    the tiny KGAT folder of :func:`kgat_dir` under ``tmp_path / name``, with
    the files in ``files`` replaced (``None`` leaves a file out)."""
    def make(files: Optional[Dict[str, Optional[str]]] = None,
             newline: str = '\n', name: str = 'tiny') -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        content: Dict[str, Optional[str]] = dict(TINY_FILES)
        content.update(files or {})
        for fname, text in content.items():
            if text is not None:
                (folder / fname).write_bytes(
                    text.replace('\n', newline).encode())
        return folder

    return make


@pytest.fixture
def kgat_dir(make_kgat) -> Path:
    """A tiny KGAT folder: 3 users, 4 items (entities 0-3), 2 other
    entities (4, 5), 2 relations (0 = genre, 1 = similar to)::

        interactions (train ---, test ...)     KG triples

        u0 --- i0, i1      ... i2             i0 -0-> e4 <-0- i1
        u1 --- i1, i2, i3  ... i0             i2 -0-> e5 <-0- i3
        u2 --- i0, i3      ... i1             i0 -1-> i1
                                              e4 -1-> e5 -1-> i3

    ``entity_list.txt`` names entities 0-4 only (KGAT's 3-column
    ``org_id remap_id freebase_id`` rows for the items, a 2-column row for
    entity 4); ``relation_list.txt`` has a header and a name with a space.
    """
    return make_kgat()


@pytest.fixture
def tiny() -> Dict[str, set]:
    """The content of :func:`kgat_dir` as Python sets."""
    return {
        'train': {(0, 0), (0, 1), (1, 1), (1, 2), (1, 3), (2, 0), (2, 3)},
        'test': {(0, 2), (1, 0), (2, 1)},
        'kg': {(0, 0, 4), (1, 0, 4), (2, 0, 5), (3, 0, 5), (0, 1, 1),
               (4, 1, 5), (5, 1, 3)},
    }
