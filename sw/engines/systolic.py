"""The systolic array's arithmetic: an int8 x int8 matrix product."""

import numpy as np

__all__ = ["matmul"]


def matmul(act, entries, mode):
    """``act [k, rows]`` int8, ``entries [k, cols]`` int8 weights -> int64 ``[cols, rows]``."""
    return np.asarray(entries, np.int64).T @ np.asarray(act, np.int64)
