import io
import os
import zipfile
from pathlib import Path

import pytest

import kgsampler.data.datasets as datasets_module
from kgsampler.data import AmazonBook, KGRecDataset, LastFM, Yelp2018

BASE = ('https://raw.githubusercontent.com/xiangwang1223/'
        'knowledge_graph_attention_network/master/Data')


def offline(url, folder, log=True, filename=None):
    raise OSError('<urlopen error [Errno -3] Temporary failure in name '
                  'resolution>')


def test_offline_error(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_module, 'download_url', offline)
    raw = os.path.join(str(tmp_path), 'amazon-book', 'raw')
    with pytest.raises(RuntimeError) as info:
        AmazonBook(str(tmp_path))
    msg = str(info.value)
    assert msg.startswith("AmazonBook: could not download 'train.txt' from "
                          f"{BASE}/amazon-book/train.txt (<urlopen error")
    assert f" or {BASE}/amazon-book/train.txt.zip (" in msg
    assert 'name resolution' in msg
    assert f"into '{raw}'" in msg
    assert 'KGRecDataset.from_kgat(path)' in msg
    assert os.listdir(raw) == []  # no partial files are left


def test_prepared_raw_folder_loads_without_download(tmp_path, monkeypatch,
                                                    make_kgat):
    monkeypatch.setattr(datasets_module, 'download_url', offline)
    make_kgat(name='last-fm/raw')  # tmp_path / 'last-fm' / 'raw'
    ds = LastFM(str(tmp_path), valid_ratio=0.0)
    assert isinstance(ds, KGRecDataset)
    assert ds.name == 'last-fm'
    assert ds.raw_dir == os.path.join(str(tmp_path), 'last-fm', 'raw')
    assert ds.statistics()['num_train'] == 7
    assert repr(ds).startswith("LastFM(name='last-fm', users=3")
    assert ds.data.validate()


def test_force_reload_keeps_files_when_offline(tmp_path, monkeypatch,
                                               make_kgat):
    monkeypatch.setattr(datasets_module, 'download_url', offline)
    folder = make_kgat(name='yelp2018/raw')
    before = sorted(os.listdir(folder))
    with pytest.raises(RuntimeError, match='Yelp2018: could not download'):
        Yelp2018(str(tmp_path), force_reload=True)
    assert sorted(os.listdir(folder)) == before


def test_download_with_zipped_kg(tmp_path, monkeypatch, make_kgat):
    """A fake server: plain train/test/relation list, zipped KG, no entity
    list."""
    src = make_kgat(name='server')
    served = {}
    for name in ('train.txt', 'test.txt', 'relation_list.txt'):
        served[f'{BASE}/amazon-book/{name}'] = (src / name).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        z.writestr('kg_final.txt', (src / 'kg_final.txt').read_bytes())
    served[f'{BASE}/amazon-book/kg_final.txt.zip'] = buf.getvalue()
    requested = []

    def fake_download(url, folder, log=True, filename=None):
        requested.append(url)
        if url not in served:
            raise OSError('HTTP Error 404: Not Found')
        path = Path(folder) / url.rpartition('/')[2]
        path.write_bytes(served[url])
        return str(path)

    monkeypatch.setattr(datasets_module, 'download_url', fake_download)
    with pytest.warns(UserWarning, match="optional 'entity_list.txt'"):
        ds = AmazonBook(str(tmp_path), valid_ratio=0.0)
    assert ds.statistics()['num_triples'] == 7
    assert ds.relation_names == ['genre', 'similar to']
    assert ds.entity_names is None
    raw = tmp_path / 'amazon-book' / 'raw'
    assert sorted(os.listdir(raw)) == ['kg_final.txt', 'relation_list.txt',
                                       'test.txt', 'train.txt']
    # Present files are not downloaded again:
    requested.clear()
    AmazonBook(str(tmp_path))
    assert requested == []


def test_root_type():
    with pytest.raises(TypeError, match=r"AmazonBook: 'root' must be a str"):
        AmazonBook(3)


def test_movielens_1m_download(tmp_path, monkeypatch, make_kgat):
    """A fake server with DiKGRS' plain files at the pinned commit."""
    from kgsampler.data.datasets import MovieLens1M
    src = make_kgat(name='server')
    base = ('https://raw.githubusercontent.com/alipay/A-Knowledge-augmented-'
            'Method-DiKGRS/fd0892b4f44c975a9d04dc55d9bdaf7dce5d737c/data/'
            'movie')
    served = {f'{base}/{n}': (src / n).read_bytes()
              for n in ('train.txt', 'test.txt', 'kg_final.txt',
                        'relation_list.txt')}
    requested = []

    def fake_download(url, folder, log=True, filename=None):
        requested.append(url)
        if url not in served:
            raise OSError('HTTP Error 404: Not Found')
        path = Path(folder) / url.rpartition('/')[2]
        path.write_bytes(served[url])
        return str(path)

    monkeypatch.setattr(datasets_module, 'download_url', fake_download)
    ds = MovieLens1M(str(tmp_path), valid_ratio=0.0)
    assert ds.name == 'ml-1m' and ds.statistics()['num_triples'] == 7
    assert sorted(requested) == sorted(served)
    assert sorted(os.listdir(tmp_path / 'ml-1m' / 'raw')) == [
        'kg_final.txt', 'relation_list.txt', 'test.txt', 'train.txt']
