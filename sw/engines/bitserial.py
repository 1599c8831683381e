"""The bit-serial engine's arithmetic: its weight entries decoded to integer weights, times
the activations (docs/bitserial.md)."""

import numpy as np

from hw.bitserial import EXTRA, FP_MAGS
from hw.isa import BitSerialType

__all__ = ["FP_VALUES", "EXTRA_VALUES", "decode", "matmul"]

#: FP code -> value (sign bit 3, magnitude index bits 2..0); code 8 is FPX's extra value
FP_VALUES = np.concatenate([FP_MAGS, np.negative(FP_MAGS)]).astype(np.int64)
#: FPX selector -> the extra value of the channel's group
EXTRA_VALUES = np.array(EXTRA, np.int64)


def _nibbles(entries, ch):
    """Weight entries -> codes ``[steps, 4, ch]`` (entry nibble ``4 * (f * ch + c)``)."""
    raw = np.asarray(entries).view(np.uint8).reshape(len(entries), -1)
    nib = np.stack([raw & 15, raw >> 4], -1).reshape(len(entries), -1)[:, :4 * ch]
    return nib.reshape(len(entries), 4, ch).astype(np.int64)


def decode(entries, dtype, ch):
    """The integer weights ``[k, ch]`` a MATMUL's weight entries hold."""
    dtype = BitSerialType(dtype)
    entries = np.asarray(entries)
    if dtype == BitSerialType.FPX:
        raw = entries[0].view(np.uint8).astype(np.int64)
        bits = np.unpackbits(raw[:, None].astype(np.uint8), axis=1, bitorder="little")
        sel = bits.reshape(-1, 2)[:ch] @ np.array([1, 2])                # [ch]
        codes = _nibbles(entries[1:], ch)
        w = FP_VALUES[codes]
        return np.where(codes == 8, EXTRA_VALUES[sel][None, None, :], w).reshape(-1, ch)
    codes = _nibbles(entries, ch)
    signed = codes - 16 * (codes >> 3)
    if dtype == BitSerialType.INT:
        return signed.reshape(-1, ch)
    if dtype == BitSerialType.INT8:             # planes: low nibble (unsigned), high (signed)
        lo, hi = codes[0::2], signed[1::2]
        return (lo + 16 * hi).reshape(-1, ch)
    return FP_VALUES[codes].reshape(-1, ch)


def matmul(act, entries, mode):
    """``act [k, rows]`` int8, the MATMUL's weight entries -> int64 ``[ch, rows]``."""
    act = np.asarray(act, np.int64)
    ch = np.asarray(entries).view(np.uint8).reshape(len(entries), -1).shape[1] // 2
    w = decode(entries, int(getattr(mode.dtype, "value", mode.dtype)), ch)
    return w.T @ act
