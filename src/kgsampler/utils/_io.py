r"""Crash-safe file output: every file the package writes (checkpoints,
:obj:`metrics.json`, the warm-start cache, report tables and figures) goes
through :func:`atomic_write_bytes`.

The content is written to a temporary file in the target's folder, flushed,
:func:`os.fsync`-ed and renamed over the target with :func:`os.replace`
(atomic on POSIX and Windows), so a reader sees either the previous complete
file or the new complete file, never a truncated one. When anything fails
(a full disk, a read-only folder, a missing folder), the temporary file is
removed, the previous file is left as it was and an :class:`AtomicWriteError`
names the path and the operating-system error.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
from typing import Any, List, Tuple

__all__ = ['AtomicWriteError', 'atomic_write_bytes', 'atomic_write_text',
           'atomic_torch_save', 'atomic_json_dump', 'json_safe']


class AtomicWriteError(OSError):
    r"""A file could not be written; the previous file (if any) is intact.
    Carries :obj:`errno`, :obj:`strerror` and :obj:`filename` of the
    underlying :class:`OSError`."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str) -> None:
    # makes the rename itself durable; not supported everywhere (Windows)
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    r"""Replaces :obj:`path` by :obj:`data` atomically (temporary file in the
    same folder, flush, fsync, :func:`os.replace`).

    Args:
        path (str or os.PathLike): The target file; its folder must exist.
        data (bytes): The new content.

    Raises:
        AtomicWriteError: If the temporary file cannot be created, written,
            synced or renamed; the message names :obj:`path` and the OS
            error, and the previous file is left in place.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder,
                                   prefix=f'.{os.path.basename(path)}.',
                                   suffix='.tmp')
        with os.fdopen(fd, 'wb') as f:
            # mkstemp makes the file private (0600): give it the mode the
            # target has, or the one a plain open() would give
            try:
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            except FileNotFoundError:
                os.chmod(tmp, 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise AtomicWriteError(
            e.errno, f"could not write '{path}': {reason} (the previous "
            f"file, if any, is unchanged)", path) from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _fsync_dir(folder)


def atomic_write_text(path, text: str) -> None:
    r""":func:`atomic_write_bytes` of :obj:`text` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode('utf-8'))


def atomic_torch_save(obj: Any, path) -> None:
    r""":func:`torch.save` of :obj:`obj` into :obj:`path` through
    :func:`atomic_write_bytes` (serialised in memory first, so a failing
    disk gives an :class:`AtomicWriteError` naming the path, not an error
    of the zip writer)."""
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def json_safe(obj: Any, where: str = '') -> Tuple[Any, List[str]]:
    r"""A copy of :obj:`obj` (dicts, lists, tuples, numbers, strings) with
    every non-finite float (NaN, :math:`\pm\infty`) replaced by
    :obj:`None`, and the locations replaced (e.g.
    :obj:`"history[3].loss"`), so that strict JSON parsers accept the
    output."""
    bad: List[str] = []

    def walk(x, at):
        if isinstance(x, dict):
            return {k: walk(v, f'{at}.{k}' if at else str(k))
                    for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v, f'{at}[{i}]') for i, v in enumerate(x)]
        if isinstance(x, float) and not math.isfinite(x):
            bad.append(at)
            return None
        return x
    return walk(obj, where), bad


def atomic_json_dump(obj: Any, path, indent: int = 2) -> List[str]:
    r"""Writes :obj:`obj` as strict JSON (no :obj:`NaN`/:obj:`Infinity`:
    see :func:`json_safe`) through :func:`atomic_write_bytes`; returns the
    locations of the non-finite values written as :obj:`null`."""
    clean, bad = json_safe(obj)
    text = json.dumps(clean, indent=indent, allow_nan=False)
    atomic_write_text(path, text + '\n')
    return bad
