"""Choosing a run's protocol (bench/records/protocol.py's `RunProtocol`) from a preset plus explicit flags.

Presets are TOML files shipped in bench/presets/ (read by bench/defaults.py); a flag given on the
command line always wins.
A run folder holds studies of one protocol at a time: rerunning with a different one is refused
(field by field) unless forced, and then its studies live beside the old ones, never mixed.
"""

from __future__ import annotations

from typing import Optional

from bench.config import check_protocol, study_defaults
from bench.defaults import CHOICES, DEFAULTS, load_preset, preset_names, preset_seeds  # noqa: F401
from bench.records.protocol import RunProtocol  # noqa: F401  (the stored form; resolved here)

SEARCHES = CHOICES["search"]
MATCHES = CHOICES["match"]


def resolve_protocol(dataset: str, preset: str = DEFAULTS["preset"], *, search: Optional[str] = None,
                     steps: Optional[int] = None, eval_every: Optional[int] = None,
                     eval_samples: Optional[int] = None, extractor: Optional[str] = None,
                     match: Optional[str] = None, nll_k: Optional[int] = None,
                     nll_n: Optional[int] = None, sample_steps: Optional[int] = None,
                     numerics: Optional[str] = None, arch: Optional[str] = None) -> RunProtocol:
    """The defaults table with the dataset's schedule, the preset's values over it, flags on top."""
    from bench.data import get_dataset

    info = get_dataset(dataset).info
    values = load_preset(preset)
    fallback = {k: values.get(k, v) for k, v in study_defaults(info).items()}
    given = {"search": search, "steps": steps, "eval_every": eval_every, "eval_samples": eval_samples,
             "extractor": extractor, "match": match, "nll_k": nll_k, "nll_n": nll_n, "sample_steps": sample_steps,
             "numerics": numerics, "arch": arch}
    return RunProtocol(dataset=info.name, **check_protocol(info, given, fallback))
