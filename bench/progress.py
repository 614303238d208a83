"""Progress bars for long work deep in the library: preparing a dataset (generating triangles,
decoding image folders) and the long parts of one evaluation (NLL bound, triangle recall by
inversion, PixelCNN sampling, AIS), which can take longer than the training around them.

Whether bars are shown is the caller's choice, set once around the work with `shown(...)`
instead of being passed down to every function: `bench` sets it from `--no-progress` for the
whole command (bench/cli.py main), a trial's evaluator from its options. Off by default, so that
library calls and tests stay quiet. A bar counts on the host: it adds no device synchronisation.
"""

from __future__ import annotations

import contextvars
import sys
from contextlib import contextmanager

from tqdm.auto import tqdm

_SHOWN = contextvars.ContextVar("bench_progress_shown", default=False)


@contextmanager
def shown(enabled: bool):
    token = _SHOWN.set(bool(enabled))
    try:
        yield
    finally:
        _SHOWN.reset(token)


def bar(iterable=None, *, total=None, desc: str, unit: str = "it", min_total: int = 0):
    """A tqdm bar, shown where asked for and where the work has at least `min_total` units."""
    total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
    small = total is not None and total < min_total
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=small or not _SHOWN.get(), leave=False,
                file=sys.stderr, dynamic_ncols=True)
