"""Progress reporting for long runs, on ``tqdm`` (terminals and Jupyter alike, via ``tqdm.auto``).

>>> bar = Progress(3, "demo", enabled=False)
>>> for i in range(3):
...     bar(i + 1)
"""
from __future__ import annotations

import sys

__all__ = ["Progress"]


class Progress:
    """A callable ``bar(done, total=None)`` that moves a tqdm bar to ``done``.

    The numerics report progress as ``progress(done, total)`` callbacks; this adapter turns
    them into a bar on stderr (or a notebook widget), closed when done reaches total.
    ``enabled=False`` makes it a no-op.
    """

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True):
        self.total, self.label, self.enabled = int(total), label, bool(enabled)
        self._bar = None
        self._stream = stream or sys.stderr

    def __call__(self, done: int, total: int | None = None):
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total or self.total, desc=self.label, file=self._stream, leave=True,
                             dynamic_ncols=True)
        if total and total != self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)
        if self._bar.n >= self._bar.total:
            self._bar.close()

    def close(self):
        if self._bar is not None:
            self._bar.close()
