"""Progress bars for the long parts inside one evaluation (NLL bound, triangle recall by
inversion, PixelCNN sampling, AIS), which can take longer than the training around them.

Whether bars are shown is the caller's choice (`--no-progress`), set once around the work with
`shown(...)` instead of being passed down to every function; off by default, so that library
calls and tests stay quiet. A bar counts on the host: it adds no device synchronisation.
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


def bar(iterable=None, *, total=None, desc: str, unit: str = "it"):
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not _SHOWN.get(), leave=False,
                file=sys.stderr, dynamic_ncols=True)
