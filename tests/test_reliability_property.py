"""A property test of the KGAT reader: whatever the bytes, it loads a
consistent dataset or raises its own, file-naming ValueError. Needs
hypothesis (the test extra); skipped without it."""
import string
import warnings

import pytest

from kgsampler.data.dataset import KGRecDataset

hypothesis = pytest.importorskip(
    'hypothesis', reason='hypothesis is not installed (the test extra)')
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ALPHABET = string.digits * 4 + '  \t\n\n\r-+x.#\x00\xe9'
_text = st.text(alphabet=_ALPHABET, max_size=60).map(
    lambda s: s.encode('utf-8'))
_ids = st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=5),
                min_size=1, max_size=6).map(
    lambda rows: '\n'.join(' '.join(map(str, r)) for r in rows).encode())
_triples = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 3),
                              st.integers(0, 12)), max_size=8).map(
    lambda rows: '\n'.join(' '.join(map(str, r)) for r in rows).encode())
_big = st.sampled_from([b'0 10000000', b'0 9223372036854775807',
                        b'0 99999999999999999999', b'-1 0'])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(train=st.one_of(_ids, _text, _big), test=st.one_of(_ids, _text),
       kg=st.one_of(_triples, _text, _big))
def test_reader_raises_only_its_own_errors(tmp_path_factory, train, test,
                                           kg):
    """Whatever the bytes, the reader either loads a consistent dataset or
    raises a ValueError that names the file; nothing else escapes."""
    folder = tmp_path_factory.mktemp('prop')
    for name, data in (('train.txt', train), ('test.txt', test),
                       ('kg_final.txt', kg)):
        (folder / name).write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            ds = KGRecDataset.from_kgat(folder)
    except ValueError as e:
        assert str(folder) in str(e), e
        return
    s = ds.statistics()
    assert s['num_train'] + s['num_valid'] > 0
    assert int(ds.kg[:, [0, 2]].max()) < s['num_entities'] if ds.kg.numel() \
        else True
    assert s['num_items'] <= s['num_entities']
    assert int((ds.train_pos.degree() < s['num_items']).sum()) == \
        s['num_users']  # every user has a possible negative
