"""Hyperparameter search spaces as data: the author defaults plus the wide and narrow ranges (PROTOCOL §4).

A model declares its space once; the same object validates `--set key=value`, samples random
search configurations, and (in `bench.studies`) becomes Optuna distributions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

import numpy as np

from bench.errors import BenchError


@dataclass(frozen=True)
class LogUniform:
    """10^U[low_exp, high_exp], the study's learning-rate style range."""

    low_exp: float
    high_exp: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(10.0 ** rng.uniform(self.low_exp, self.high_exp))

    def describe(self) -> str:
        return f"10^U[{self.low_exp:g},{self.high_exp:g}]"

    def holds(self, value) -> bool:
        return 10.0 ** self.low_exp <= value <= 10.0 ** self.high_exp


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def describe(self) -> str:
        return f"U[{self.low:g},{self.high:g}]"

    def holds(self, value) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Choice:
    options: tuple

    def sample(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def describe(self) -> str:
        return "{" + ", ".join(_fmt(o) for o in self.options) + "}"

    def holds(self, value) -> bool:
        return value in self.options


@dataclass(frozen=True)
class Fixed:
    value: Any

    def sample(self, rng: np.random.Generator) -> Any:
        return self.value

    def describe(self) -> str:
        return _fmt(self.value)

    def holds(self, value) -> bool:
        return value == self.value


Param = Union[LogUniform, Uniform, Choice, Fixed]


@dataclass(frozen=True)
class Domain:
    """The values a hyperparameter can take at all (a search range is a part of it): `--set`
    outside it is refused in one line instead of failing inside Adam or a division."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def holds(self, value) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        parts = []
        if self.low > -math.inf:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high < math.inf:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts)


POSITIVE = Domain(0.0, low_open=True)
NON_NEGATIVE = Domain(0.0)
# The domains of the hyperparameters the built-in models share; a model adds its own with
# SearchSpace(domains=...). A key named in neither is only type-checked.
DOMAINS = {
    "lr": POSITIVE,
    "beta1": Domain(0.0, 1.0, high_open=True),  # Adam's β1 ∈ [0, 1)
    "disc_iters": Domain(1.0),  # D steps per G step
    "clip": POSITIVE,  # WGAN's weight clipping bound
    "lambda": NON_NEGATIVE,  # penalty / adversarial weights
    "beta": POSITIVE,  # β-VAE's KL weight
    "gamma": Domain(0.0, 1.0, low_open=True),  # BEGAN's diversity ratio
    "lambda_k": NON_NEGATIVE,  # BEGAN's k learning rate
}


def _fmt(v: Any) -> str:
    return ("on" if v else "off") if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class SearchSpace:
    """Author defaults (sample #0 of every search) and the wide/narrow random-search ranges.

    Every key of `defaults` must appear in both ranges, so a sampled configuration is always
    complete and of the same types as the defaults. `narrow_defaults` overrides some defaults in
    the narrow search's slot 0, where the study's own code does (its VAE turns the encoder's
    batch norm off there).
    """

    defaults: Mapping[str, Any]
    wide: Mapping[str, Param] = field(default_factory=dict)
    narrow: Mapping[str, Param] = field(default_factory=dict)
    narrow_defaults: Mapping[str, Any] = field(default_factory=dict)
    domains: Mapping[str, Domain] = field(default_factory=dict)  # beside DOMAINS, for a model's own keys

    def domain(self, key: str) -> Optional[Domain]:
        return self.domains.get(key) or DOMAINS.get(key)

    def in_domain(self, key: str, value) -> bool:
        domain = self.domain(key)
        return domain is None or isinstance(value, bool) or domain.holds(value)

    def __post_init__(self):
        for name, space in (("wide", self.wide), ("narrow", self.narrow)):
            if set(space) != set(self.defaults):
                missing = sorted(set(self.defaults) ^ set(space))
                raise ValueError(f"{name} search space and defaults disagree on {missing}")
        unknown = sorted(set(self.narrow_defaults) - set(self.defaults))
        if unknown:
            raise ValueError(f"narrow defaults name hyperparameters the space lacks: {unknown}")
        for key, value in {**self.defaults, **self.narrow_defaults}.items():
            if not self.in_domain(key, value):
                raise ValueError(f"default {key}={value!r} lies outside its domain ({self.domain(key).describe()})")

    def defaults_for(self, which: str) -> dict:
        """Slot 0 of a `which` search: the author defaults of that range."""
        self.ranges(which)
        return {**self.defaults, **(self.narrow_defaults if which == "narrow" else {})}

    def ranges(self, which: str) -> Mapping[str, Param]:
        if which not in ("wide", "narrow"):
            raise BenchError(f"unknown search range {which!r}; accepted: wide, narrow")
        return self.wide if which == "wide" else self.narrow

    def sample(self, which: str, rng: np.random.Generator) -> dict:
        """One random configuration; keys are drawn in sorted order so the stream is stable."""
        space = self.ranges(which)
        return {k: _like(self.defaults[k], space[k].sample(rng)) for k in sorted(space)}

    def resolve(self, overrides: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None) -> dict:
        """`base` (default: the author defaults) with `overrides` applied and type-checked."""
        config = dict(self.defaults if base is None else base)
        for key, value in (overrides or {}).items():
            if key not in self.defaults:
                accepted = ", ".join(sorted(self.defaults))
                raise BenchError(f"unknown hyperparameter {key!r}; accepted: {accepted}")
            config[key] = coerce(key, value, self.defaults[key])
            if not self.in_domain(key, config[key]):
                raise BenchError(f"bad value {value!r} for {key}: it must be {self.domain(key).describe()}")
        return config

    def outside_search(self, config: Mapping[str, Any], which: str = "wide") -> list[str]:
        """`key=value (range)` for each value of `config` the `which` search would never draw:
        allowed (the protocol's ranges are not the models' domains) but worth a warning."""
        space = self.ranges(which)
        return [f"{k}={_fmt(v)} ({which} range {space[k].describe()})" for k, v in config.items()
                if k in space and not space[k].holds(v)]


def _like(default: Any, value: Any) -> Any:
    """Give a sampled value the type of the default (disc_iters stays an int, switches bools)."""
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


def coerce(key: str, value: Any, default: Any) -> Any:
    """Parse a `--set` value (string or already typed) into the type of the default."""
    kind = type(default)
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(str(value)) if isinstance(value, str) else int(value)
        if isinstance(default, float):
            out = float(value)
            if not math.isfinite(out):
                raise ValueError
            return out
        return kind(value)
    except (TypeError, ValueError):
        expected = {bool: "on/off (true/false, 1/0)", int: "an integer", float: "a finite number"}.get(kind, kind.__name__)
        raise BenchError(f"bad value {value!r} for {key}: expected {expected}") from None


def adam_search_space(lr: float, beta1: float, narrow_beta1: float, **extra) -> SearchSpace:
    """Non-GAN models search Adam's lr and β1 on the study's ranges (PROTOCOL §4: wide lr 10^U[−5,−2],
    β1 U[0,1]; narrow lr 10^U[−4,−3], β1 fixed), plus their own entries as (default, wide, narrow)."""
    return SearchSpace(
        defaults=dict(lr=lr, beta1=beta1, **{k: v[0] for k, v in extra.items()}),
        wide={"lr": LogUniform(-5, -2), "beta1": Uniform(0.0, 1.0), **{k: v[1] for k, v in extra.items()}},
        narrow={"lr": LogUniform(-4, -3), "beta1": Fixed(narrow_beta1), **{k: v[2] for k, v in extra.items()}},
    )
