"""Weight initializers: name (or constant, or callable) -> array of a given shape.

Fans for a Dense weight of shape (in, out): fan_in = in, fan_out = out.
    glorot_uniform  U(-a, a), a = sqrt(6 / (fan_in + fan_out))   (the default)
    glorot_normal   N(0, 2 / (fan_in + fan_out))
    he_uniform      U(-a, a), a = sqrt(6 / fan_in)
    he_normal       N(0, 2 / fan_in)
    lecun_normal    N(0, 1 / fan_in)
    zeros, ones, a float constant, or a callable (shape, rng) -> array.
Draws come from the model's seeded ``numpy.random.Generator``.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def _uniform(limit):
    return lambda shape, rng: rng.uniform(-limit(shape), limit(shape), size=shape)


def _normal(std):
    return lambda shape, rng: rng.normal(0.0, std(shape), size=shape)


INITIALIZERS: dict[str, Callable] = {
    "glorot_uniform": _uniform(lambda s: math.sqrt(6.0 / sum(_fans(s)))),
    "glorot_normal": _normal(lambda s: math.sqrt(2.0 / sum(_fans(s)))),
    "he_uniform": _uniform(lambda s: math.sqrt(6.0 / _fans(s)[0])),
    "he_normal": _normal(lambda s: math.sqrt(2.0 / _fans(s)[0])),
    "lecun_normal": _normal(lambda s: math.sqrt(1.0 / _fans(s)[0])),
    "zeros": lambda shape, rng: np.zeros(shape),
    "ones": lambda shape, rng: np.ones(shape),
}


def check_initializer(spec, what: str = "initializer"):
    """Validate an initializer spec at layer construction (not at compile time).

    "custom" stands for a callable in a reloaded checkpoint (whose values are loaded).
    """
    if isinstance(spec, str) and (spec in INITIALIZERS or spec == "custom"):
        return spec
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool) and math.isfinite(spec):
        return float(spec)
    if callable(spec):
        return spec
    raise ValueError(f"{what}={spec!r} is not an initializer; use one of "
                     f"{', '.join(INITIALIZERS)}, a float constant, or a callable (shape, rng) -> array")


def initialize(spec, shape: tuple, rng: np.random.Generator, name: str) -> np.ndarray:
    """Draw the initial values of parameter ``name``."""
    if spec == "custom":
        values = np.zeros(shape)
    elif isinstance(spec, str):
        values = INITIALIZERS[spec](shape, rng)
    elif isinstance(spec, float):
        values = np.full(shape, spec)
    else:
        values = np.asarray(spec(shape, rng))
        if values.shape != tuple(shape):
            raise ValueError(f"the initializer for {name} returned shape {values.shape}, "
                             f"expected {tuple(shape)}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the initializer for {name} returned NaN or Inf")
    return values
