"""`bench export`: the tidy results table as CSV or Parquet, written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

from bench.defaults import CHOICES, DEFAULTS
from bench.errors import BenchError
from bench.files import atomic_write_bytes
from bench.reports.results import find_runs, load_results

FORMATS = CHOICES["format"]


def export_results(path, fmt: str = DEFAULTS["format"], out: Optional[Path] = None) -> tuple[Path, int]:
    if fmt not in FORMATS:
        raise BenchError(f"unknown format {fmt!r}; accepted: {', '.join(FORMATS)}")
    path = Path(path)
    find_runs(path)
    frame = load_results(path)
    out = Path(out) if out else path / f"results.{fmt}"
    if fmt == "csv":
        data = frame.to_csv(index=False).encode()
    else:
        buffer = io.BytesIO()
        # Nullable dtypes: a column of bools with gaps (a hyperparameter one model lacks) stays typed.
        frame.convert_dtypes().to_parquet(buffer, index=False)
        data = buffer.getvalue()
    atomic_write_bytes(out, data)
    return out, len(frame)
