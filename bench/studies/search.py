"""Random search as data: slot i of a model's study always holds the same configuration.

Slot 0 is the author defaults; slot i > 0 is drawn from the model's search space by a generator
seeded with (model seed, i), where the model seed is a hash of the model's name. The list of
configurations therefore depends on the model and the search range only: every dataset, every
machine and every order of execution sees the same ones (PROTOCOL §4).
"""

from __future__ import annotations

import hashlib

import numpy as np
import optuna.distributions as od

from bench.models.search_space import Choice, Fixed, LogUniform, SearchSpace, Uniform

SEED_RERUN_BASE = 100_000  # seeds of best-configuration reruns: never equal to a search slot's seed


def model_seed(model: str) -> int:
    return int.from_bytes(hashlib.sha256(f"bench-search/{model}".encode()).digest()[:8], "little")


def configuration(space: SearchSpace, search: str, model: str, slot: int) -> dict:
    if slot == 0:
        return space.defaults_for(search)
    return space.sample(search, np.random.default_rng([model_seed(model), slot]))


def distributions(space: SearchSpace, search: str) -> dict:
    """The ranges as Optuna distributions, so dashboards and `study.trials_dataframe()` show them."""
    out = {}
    for name, param in space.ranges(search).items():
        if isinstance(param, LogUniform):
            out[name] = od.FloatDistribution(10.0 ** param.low_exp, 10.0 ** param.high_exp, log=True)
        elif isinstance(param, Uniform):
            out[name] = od.FloatDistribution(param.low, param.high)
        elif isinstance(param, Choice):
            out[name] = od.CategoricalDistribution(list(param.options))
        elif isinstance(param, Fixed):
            out[name] = od.CategoricalDistribution([param.value])
    # Author defaults may lie outside a narrow range (e.g. β1 = 0 where narrow fixes 0.5).
    for name, value in space.defaults_for(search).items():
        dist = out[name]
        if isinstance(dist, od.CategoricalDistribution) and value not in dist.choices:
            out[name] = od.CategoricalDistribution(list(dist.choices) + [value])
        elif isinstance(dist, od.FloatDistribution) and not dist.low <= value <= dist.high:
            out[name] = od.FloatDistribution(min(dist.low, value), max(dist.high, value), log=dist.log)
    return out
