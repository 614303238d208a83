"""Decoding many small image files into one uint8 array, in parallel, with a progress bar.

Shared by `folder:PATH` and CelebA. Threads, not processes: Pillow releases the GIL while it
decodes, the output array is filled in place (no pickling of 50k arrays), and nothing has to be
importable in a child process.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np


def decode_all(
    items: Sequence,
    read: Callable[[object], np.ndarray],
    shape: tuple[int, ...],
    desc: str,
    batch: int = 256,
) -> np.ndarray:
    """uint8 [len(items), *shape] with row i = read(items[i]).

    `read` may raise (a BenchError naming the file, say); the first error stops the work and is
    re-raised as is.
    """
    from bench.progress import bar as progress_bar

    out = np.empty((len(items), *shape), dtype=np.uint8)

    def work(start: int) -> int:
        stop = min(start + batch, len(items))
        for i in range(start, stop):
            out[i] = read(items[i])
        return stop - start

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, progress_bar(
            total=len(items), desc=desc, unit="img", min_total=2_000) as bar:
        futures = [pool.submit(work, s) for s in range(0, len(items), batch)]
        try:
            for f in futures:
                bar.update(f.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return out
