"""The LUT tensor core in the compiler: low-bit weights as bit planes (compiler/lutpack.py)."""

from __future__ import annotations

import numpy as np

from ..lutpack import pack_planes
from ..lutpack import random_weights as grid_weights

__all__ = ["mode_of", "why_illegal", "pad_value", "pack", "random_mode", "random_weights",
           "describe", "group"]


def mode_of(fmt):
    """The MATMUL mode for weight format ``fmt``: its bit planes and grid."""
    return {"wbits": fmt.wbits, "odd": int(fmt.odd)}


def why_illegal(cfg, fmt):
    """Why the engine refuses ``fmt``'s mode in ``cfg`` (the spec's rule said it does)."""
    return (f"weight format {fmt.name!r} needs {fmt.wbits}-bit weights; config "
            f"{cfg.name!r} enables lut_wbits {list(cfg.lut_wbits)}")


def pad_value(mode):
    """Padded features meet zero activations; the odd grid has no zero, so they carry 1."""
    return 1 if mode["odd"] else 0


def pack(w_kn, mode, cfg=None):
    """Integer weights ``[K, N]`` (K a multiple of 4) -> bit-plane entries
    ``[K // 4 * wbits, N // 2]`` (a 4-bit table index per channel)."""
    return pack_planes(w_kn, mode["wbits"], bool(mode["odd"])).view(np.int8)


def random_mode(rng, cfg, *, wbits=None, ternary=False):
    return {"wbits": 2 if ternary else (wbits or int(rng.choice(cfg.lut_wbits))),
            "odd": int(bool(rng.random() < 0.5) and not ternary)}


def random_weights(rng, shape, mode, *, ternary=False, group=None):
    if ternary:
        return rng.integers(-1, 2, shape)
    return grid_weights(rng, shape, mode["wbits"], bool(mode["odd"]))


def group(cfg, mode):
    """Features per MATMUL at most (None: any)."""
    return None


def describe(mode):
    return f"lut w{mode['wbits']}{'odd' if mode['odd'] else ''}"
