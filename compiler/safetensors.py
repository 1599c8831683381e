"""The safetensors file format, read and written with numpy alone, every field checked.

Layout: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON mapping each tensor
name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the data that
follows; an optional ``__metadata__`` of strings), then the data.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from sw.errors import UserError

__all__ = ["save", "load", "SafetensorsError", "DTYPES"]


class SafetensorsError(UserError):
    """A file that is not valid safetensors (says what is wrong and where)."""


#: safetensors dtype -> numpy dtype (BF16 is read as its raw 16 bits and widened)
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
          "U16": np.uint16, "U32": np.uint32, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in DTYPES.items() if k not in ("BF16",)}

MAX_HEADER = 100 << 20


def save(path, tensors: dict, metadata: dict = None):
    """Write ``tensors`` (name -> numpy array) to ``path``."""
    header, chunks, at = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype not in _NAMES:
            raise SafetensorsError(f"{name}: dtype {arr.dtype} has no safetensors type")
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(chunks))


def _bf16(raw16):
    return (raw16.astype(np.uint32) << 16).view(np.float32)


def load(path) -> tuple[dict, dict]:
    """(tensors, metadata) from ``path``; BF16 becomes float32 (exactly)."""
    path = Path(path)
    data = path.read_bytes()
    where = f"{path}"
    if len(data) < 8:
        raise SafetensorsError(f"{where}: {len(data)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        raise SafetensorsError(f"{where}: header length {n} runs past the end of the file "
                               f"({len(data)} bytes): truncated or not safetensors")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{where}: the header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{where}: the header is not a JSON object")
    body = memoryview(data)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out, end_max = {}, 0
    for name, info in header.items():
        try:
            dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{where}: tensor {name!r} lacks dtype, shape or "
                                   f"data_offsets") from None
        if dt not in DTYPES:
            raise SafetensorsError(f"{where}: tensor {name!r} has unknown dtype {dt!r}")
        np_dt = np.dtype(DTYPES[dt])
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise SafetensorsError(f"{where}: tensor {name!r} has a bad shape {shape}")
        want = int(np.prod(shape, dtype=np.int64)) * np_dt.itemsize
        if not (isinstance(b, int) and isinstance(e, int) and 0 <= b <= e):
            raise SafetensorsError(f"{where}: tensor {name!r} has bad data_offsets {[b, e]}")
        if e - b != want:
            raise SafetensorsError(f"{where}: tensor {name!r} holds {e - b} bytes; {dt} "
                                   f"{list(shape)} needs {want}")
        if e > len(body):
            raise SafetensorsError(f"{where}: tensor {name!r} ends at byte {e} of a "
                                   f"{len(body)}-byte data section: the file is truncated")
        arr = np.frombuffer(body[b:e], np_dt.newbyteorder("<")).reshape(shape)
        out[name] = _bf16(arr) if dt == "BF16" else arr.astype(np_dt)
        end_max = max(end_max, e)
    return out, meta
