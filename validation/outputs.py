"""Output locations: refuse a path that cannot be written *before* any work starts.

Every command that writes (``--out``, ``--store``, ``--plot``) checks its paths up front, so a
typo costs one line and exit status 2 instead of a finished simulation that cannot be saved,
and a refused command leaves nothing behind (docs/reliability.md). Directories themselves are
created only when the first result is written.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> check_writable(root / "new" / "deeper", "--out") == root / "new" / "deeper"
True
>>> (root / "new").exists()  # checking creates nothing
False
>>> (root / "file").write_text("x")
1
>>> check_writable(root / "file" / "sub", "--out")
Traceback (most recent call last):
...
ValueError: --out: cannot create ... is a file, not a directory
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["check_writable"]


def check_writable(path, name: str, kind: str = "dir") -> Path:
    """``path`` as a Path if it can be created (or written) as a ``kind`` ("dir" or "file"),
    else ValueError naming ``name``. Nothing is created."""
    if kind not in ("dir", "file"):
        raise ValueError(f"kind: 'dir' or 'file', got {kind!r}")
    if path is None or str(path).strip() == "":
        raise ValueError(f"{name}: expected a path, got {path!r}")
    p = Path(path)
    if p.exists():
        if kind == "dir" and not p.is_dir():
            raise ValueError(f"{name}: {str(p)!r} is a file; give a directory")
        if kind == "file" and p.is_dir():
            raise ValueError(f"{name}: {str(p)!r} is a directory; give a file path")
        where = p if kind == "dir" else p.absolute().parent
    else:
        where = p.absolute().parent
        while not where.exists():
            where = where.parent
        if not where.is_dir():
            raise ValueError(f"{name}: cannot create {str(p)!r}: {str(where)!r} is a file, not a directory")
    try:  # a real probe: os.access says yes to root even where mkdir fails (/proc, read-only mounts)
        os.rmdir(tempfile.mkdtemp(prefix=".cascade-probe-", dir=where))
    except OSError as exc:
        raise ValueError(f"{name}: cannot write {str(p)!r}: {str(where)!r}: {exc.strerror}") from None
    return p
