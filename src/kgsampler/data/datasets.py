r"""The benchmark datasets of the KGAT repository (Wang et al., KDD 2019),
PyTorch Geometric style: the raw files live in :obj:`root/<name>/raw/` and
are downloaded there when missing."""
from __future__ import annotations

import os
import os.path as osp
import shutil
import tempfile
import warnings
import zipfile
from typing import List

from torch_geometric.data import download_url, extract_zip

from kgsampler.data.dataset import KGRecDataset, _kgat_kwargs
from kgsampler.data.kgat import read_kgat

__all__ = ['KGATDataset', 'AmazonBook', 'LastFM', 'Yelp2018', 'MovieLens1M']


class KGATDataset(KGRecDataset):
    r"""Base class of the named KGAT datasets.

    The files :obj:`train.txt`, :obj:`test.txt` and :obj:`kg_final.txt`
    (and, when available, :obj:`relation_list.txt` and
    :obj:`entity_list.txt`) are read from :obj:`root/<name>/raw/`. When a
    required file is missing (or :obj:`force_reload=True`), :meth:`download`
    fetches them from :attr:`url`. Without internet access, put the files
    into :obj:`root/<name>/raw/` by hand, or read any KGAT-format folder with
    :meth:`KGRecDataset.from_kgat`.

    Args:
        root (str): Root folder; files go to :obj:`root/<name>/raw/`.
        valid_ratio (float, optional): Per-user share of the training items
            moved to validation. (default: :obj:`0.1`)
        seed (int, optional): Seed of the validation split.
            (default: :obj:`2020`)
        force_reload (bool, optional): Download the files again even if they
            are present (the present files are only replaced once every
            download succeeded). (default: :obj:`False`)
    """
    #: Folder name in the KGAT repository and under :obj:`root`.
    kgat_name: str = ''
    url: str = ('https://raw.githubusercontent.com/xiangwang1223/'
                'knowledge_graph_attention_network/master/Data')
    raw_file_names: List[str] = ['train.txt', 'test.txt', 'kg_final.txt']
    optional_file_names: List[str] = ['relation_list.txt', 'entity_list.txt']

    def __init__(self, root: str, valid_ratio: float = 0.1, seed: int = 2020,
                 force_reload: bool = False):
        who = self.__class__.__name__
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"{who}: 'root' must be a str or path "
                            f"(got {type(root).__name__})")
        self.root = osp.expanduser(os.fspath(root))
        present = all(
            osp.isfile(osp.join(self.raw_dir, f))
            for f in self.raw_file_names)
        if force_reload or not present:
            self.download()
        kwargs = _kgat_kwargs(read_kgat(self.raw_dir))
        kwargs['name'] = self.kgat_name
        super().__init__(**kwargs, valid_ratio=valid_ratio, seed=seed)

    @property
    def raw_dir(self) -> str:
        return osp.join(self.root, self.kgat_name, 'raw')

    def _urls(self, fname: str) -> List[str]:
        base = f'{self.url}/{self.kgat_name}/{fname}'
        # KGAT ships large files zipped; try the likelier form first.
        if fname == 'kg_final.txt':
            return [base + '.zip', base]
        return [base, base + '.zip']

    def _fetch(self, fname: str, tmp: str) -> List[str]:
        r"""Downloads :obj:`fname` (plain or zipped) into :obj:`tmp`.
        Returns the failed attempts as :obj:`'url (reason)'`, empty on
        success."""
        failed: List[str] = []
        for url in self._urls(fname):
            sub = tempfile.mkdtemp(dir=tmp)
            try:
                path = download_url(url, sub, log=False)
            except OSError as e:  # URLError, HTTPError, timeouts
                failed.append(f'{url} ({e})')
                continue
            if path.endswith('.zip'):
                try:
                    extract_zip(path, sub, log=False)
                except zipfile.BadZipFile as e:
                    failed.append(f'{url} (bad zip file: {e})')
                    continue
                os.remove(path)
            for dirpath, dirnames, filenames in os.walk(sub):
                dirnames[:] = [d for d in dirnames if d != '__MACOSX']
                if fname in filenames:
                    os.replace(osp.join(dirpath, fname), osp.join(tmp, fname))
                    return []
            failed.append(f'{url} (no {fname} inside)')
        return failed

    def download(self) -> None:
        r"""Downloads the raw files into :obj:`raw_dir`.

        Raises:
            RuntimeError: If a required file cannot be downloaded, naming
                the URL and how to use local files instead.
        """
        os.makedirs(self.raw_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix='.download-', dir=self.raw_dir)
        try:
            for fname in self.raw_file_names:
                failed = self._fetch(fname, tmp)
                if failed:
                    raise RuntimeError(
                        f"{self.__class__.__name__}: could not download "
                        f"'{fname}' from {' or '.join(failed)}. Without "
                        f"internet access, "
                        f"put {', '.join(self.raw_file_names)} (optionally "
                        f"{', '.join(self.optional_file_names)}) into "
                        f"'{self.raw_dir}', or read a KGAT-format folder "
                        f"with KGRecDataset.from_kgat(path)")
            for fname in self.optional_file_names:
                failed = self._fetch(fname, tmp)
                if failed:
                    warnings.warn(f"{self.__class__.__name__}: could not "
                                  f"download the optional '{fname}' from "
                                  f"{' or '.join(failed)}; names will be "
                                  f"missing",
                                  UserWarning, stacklevel=2)
            for fname in os.listdir(tmp):
                if osp.isfile(osp.join(tmp, fname)):
                    os.replace(osp.join(tmp, fname),
                               osp.join(self.raw_dir, fname))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class AmazonBook(KGATDataset):
    r"""The Amazon-book dataset of KGAT: 70,679 users, 24,915 items,
    847,733 interactions, a Freebase KG with 39 relations (KGAT's counts).

    Args: see :class:`KGATDataset`.
    """
    kgat_name = 'amazon-book'


class LastFM(KGATDataset):
    r"""The Last-FM dataset of KGAT: 23,566 users, 48,123 items, 3,034,796
    interactions, a Freebase KG with 9 relations (KGAT's counts). This is
    not the smaller HetRec/Satori Last.FM set used by KGCN; read that one
    with :meth:`KGRecDataset.from_kgat`.

    Args: see :class:`KGATDataset`.
    """
    kgat_name = 'last-fm'


class Yelp2018(KGATDataset):
    r"""The Yelp2018 dataset of KGAT: 45,919 users, 45,538 items, 1,185,068
    interactions, a KG with 42 relations (KGAT's counts).

    Args: see :class:`KGATDataset`.
    """
    kgat_name = 'yelp2018'


class MovieLens1M(KGATDataset):
    r"""MovieLens-1M in KGAT format: 6,036 users, 2,347 items (2,254 with
    interactions), 376,886 positives (ratings of at least 4, as RippleNet
    and MKR), the Satori KG with 7 relations (20,195 triples), as published
    with DiKGRS (Alipay; train/test split included). The files are fetched
    from that repository at a fixed commit. MovieLens' terms allow research
    use and forbid redistribution: keep the downloaded files to yourself.

    Args: see :class:`KGATDataset`.
    """
    kgat_name = 'ml-1m'
    url = ('https://raw.githubusercontent.com/alipay/'
           'A-Knowledge-augmented-Method-DiKGRS/'
           'fd0892b4f44c975a9d04dc55d9bdaf7dce5d737c/data')
    optional_file_names = ['relation_list.txt']

    def _urls(self, fname: str) -> List[str]:
        return [f'{self.url}/movie/{fname}']  # plain files, folder 'movie'
