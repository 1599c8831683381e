"""Integer weights as model files hold them, and how they map onto the engines.

A file's quantized tensor is ``W[n, k] = scale[n, g] * code[n, k] + offset[n, g]`` with
``g = k // group``: integer codes, a float scale per group and, for asymmetric formats
(llama.cpp's mins, GPTQ / AWQ zero points), a float offset per group. The codes become the
engine's integer weights unchanged; the scales and offsets become int16 group multipliers
(the MATMUL's scaled drain), and an offset is applied exactly as its own MATMUL of the
group's activations against weights of 1 (the activation-sum term).

Group multipliers are ``round(v / 2**e * 2**15)`` for each scale and offset ``v`` of a
channel, with ``2**e`` the smallest power of two above the channel's largest magnitude, so a
scale is held exactly when its lowest significant bit is worth at least ``2**(e - 15)``
(an fp16 scale within a factor 16 of the channel's largest, for instance).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["QWeight", "MULT_BITS", "multipliers", "effective", "placement", "Placement",
           "weight_error"]

#: Fractional bits of a group multiplier relative to the channel's power-of-two reference.
MULT_BITS = 15


@dataclass(frozen=True)
class QWeight:
    """``W = scale[:, k // group] * codes + offset[:, k // group]`` (``[N, K]``, torch
    layout); ``bits`` is the width of the code grid, ``ternary`` a {-1, 0, 1} grid; ``kind``
    names the file's format (``Q4_K``, ``GPTQ 4-bit``...) for reports. With ``perm``
    (GPTQ's act-order) column ``i`` of ``codes`` is input feature ``perm[i]``: the columns
    are sorted by group, so groups are contiguous runs of ``group`` columns."""
    codes: np.ndarray           # int8 [N, K]
    scale: np.ndarray           # float64 [N, G]
    offset: np.ndarray | None   # float64 [N, G] or None (symmetric)
    group: int
    bits: int
    kind: str
    ternary: bool = False
    perm: np.ndarray | None = None

    @property
    def shape(self):
        return self.codes.shape

    def dequant(self):
        """The float weights the file means (float64, exact), input features in order."""
        rep = lambda a: np.repeat(a, self.group, 1)[:, :self.shape[1]]    # noqa: E731
        w = self.codes.astype(np.float64) * rep(self.scale)
        if self.offset is not None:
            w += rep(self.offset)
        if self.perm is not None:
            w[:, self.perm] = w.copy()
        return w

    def rows(self, idx):
        """The output channels ``idx`` (a slice or an index array), in that order."""
        return replace(self, codes=self.codes[idx], scale=self.scale[idx],
                       offset=None if self.offset is None else self.offset[idx])


def multipliers(qw: QWeight):
    """``(gmult [N, G], omult [N, G] or None, e [N])`` int16 group multipliers with
    ``scale ~= gmult * 2**(e - MULT_BITS)`` and ``offset ~= omult * 2**(e - MULT_BITS)``."""
    top = np.abs(qw.scale).max(1)
    if qw.offset is not None:
        top = np.maximum(top, np.abs(qw.offset).max(1))
    e = np.where(top > 0, np.floor(np.log2(np.where(top > 0, top, 1.0))) + 1, 0).astype(int)
    unit = np.ldexp(1.0, e - MULT_BITS)[:, None]

    def q(v):
        return np.clip(np.rint(v / unit), -32768, 32767).astype(np.int16)
    return q(qw.scale), (None if qw.offset is None else q(qw.offset)), e


def effective(qw: QWeight):
    """The weights the engine multiplies by: the codes through the int16 multipliers (one
    scale per channel and no offset: the scale joins the REQUANT multiplier, as the
    activations' scales do, and the weights are the file's)."""
    if qw.scale.shape[1] == 1 and qw.offset is None:
        return qw.dequant()
    gm, om, e = multipliers(qw)
    eff = replace(qw, scale=np.ldexp(gm.astype(np.float64), (e - MULT_BITS)[:, None]),
                  offset=None if om is None else
                  np.ldexp(om.astype(np.float64), (e - MULT_BITS)[:, None]))
    return eff.dequant()


def weight_error(qw: QWeight, reference=None):
    """``(max |W_engine - W|, max |W|)`` with ``W`` the file's weights (``reference``: an
    independent dequantization of them; by default the exact one from ``qw``)."""
    ref = qw.dequant() if reference is None else np.asarray(reference, np.float64)
    return float(np.abs(effective(qw) - ref).max()), float(np.abs(ref).max())


@dataclass(frozen=True)
class Placement:
    """Where a file's tensor runs: ``fmt`` (a compiler.quantize weight format name), whether
    its codes are held unchanged (``exact``: the group multipliers may still round, see
    weight_error), and why not when they are not."""
    fmt: str
    exact: bool
    why: str = ""


def placement(cfg, qw: QWeight) -> Placement:
    """The engine and format that hold ``qw``'s codes in ``cfg``: low-bit codes on the LUT
    engine when it builds their width, otherwise int8 codes on the systolic array; group
    scales need the scaled drain unless one scale covers a whole row and nothing is added."""
    grouped = qw.scale.shape[1] > 1 or qw.offset is not None
    if grouped and not cfg.group_scale:
        what = "group scales" + (" and offsets" if qw.offset is not None else "")
        return Placement("int8", False, f"{what} need the scaled drain, which config "
                         f"{cfg.name!r} does not build (a configuration with the LUT "
                         f"engine has it)")
    if cfg.has_lut and qw.group % 4 == 0:
        if qw.ternary and 2 in cfg.lut_wbits:
            return Placement("ternary", True)
        fit = [b for b in cfg.lut_wbits if b >= qw.bits and b > 1]
        if fit:
            return Placement(f"w{min(fit)}", True)
    if "systolic" in cfg.engines and qw.bits <= 8:
        return Placement("int8g" if grouped else "int8", True)
    return Placement("int8", False, f"no engine of config {cfg.name!r} holds {qw.bits}-bit "
                     f"codes")
