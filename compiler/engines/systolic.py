"""The systolic array in the compiler: int8 weights, one weight entry per input feature."""

from __future__ import annotations

import numpy as np

__all__ = ["mode_of", "why_illegal", "pad_value", "pack", "random_mode", "random_weights",
           "describe", "group"]


def mode_of(fmt):
    """The MATMUL mode (named fields) for weight format ``fmt``: none."""
    return {}


def why_illegal(cfg, fmt):
    """Why the engine refuses ``fmt``'s mode in ``cfg`` (it refuses none)."""
    return f"the systolic engine cannot run weight format {fmt.name!r}"


def pad_value(mode):
    """The weight that padded features carry (they meet zero activations)."""
    return 0


def pack(w_kn, mode, cfg=None):
    """Integer weights ``[K, N]`` -> weight entries ``[K, N]`` int8 (entry k: feature k)."""
    return np.asarray(w_kn).astype(np.int8)


def random_mode(rng, cfg, *, wbits=None, ternary=False):
    return {}


def random_weights(rng, shape, mode, *, ternary=False, group=None):
    return rng.integers(-128, 128, shape, dtype=np.int8)


def group(cfg, mode):
    """Features per MATMUL at most (None: any)."""
    return None


def describe(mode):
    return "systolic"
