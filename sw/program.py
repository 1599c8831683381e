"""Programs (instruction words + header) and memory images: what every executor consumes."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.isa import INSN_BYTES, ISA_VERSION, disasm
from .errors import UserError

__all__ = ["Program", "MemoryImage", "ProgramError", "Symbol", "HEADER_BYTES", "MAGIC",
           "load_program"]

MAGIC = b"LLMA"
HEADER_BYTES = 32
_HEADER = struct.Struct("<4sHHII8s8s")   # magic, isa version, flags, n_insns, crc32, cfg hash, pad


class ProgramError(ValueError):
    """A program file is corrupt or was compiled for another configuration."""


@dataclass
class Program:
    """A list of 128-bit instruction words and the hash of the config it was compiled for."""
    words: list
    config_hash: bytes
    comments: list = field(default_factory=list)   # optional, one per word, not serialised

    def body(self) -> bytes:
        return b"".join(int(w).to_bytes(INSN_BYTES, "little") for w in self.words)

    def to_bytes(self) -> bytes:
        body = self.body()
        hdr = _HEADER.pack(MAGIC, ISA_VERSION, 0, len(self.words), zlib.crc32(body),
                           self.config_hash, b"\0" * 8)
        return hdr + body

    @classmethod
    def from_bytes(cls, blob: bytes, *, source="program") -> "Program":
        if len(blob) < HEADER_BYTES:
            raise ProgramError(f"{source}: too short to be a program ({len(blob)} bytes)")
        magic, version, _flags, n, crc, cfg, _ = _HEADER.unpack_from(blob)
        if magic != MAGIC:
            raise ProgramError(f"{source}: not an llmaccel program (bad magic {magic!r})")
        if version != ISA_VERSION:
            raise ProgramError(f"{source}: ISA version {version}, this build runs version "
                               f"{ISA_VERSION}; recompile it")
        body = blob[HEADER_BYTES:]
        if len(body) != n * INSN_BYTES:
            raise ProgramError(f"{source}: header says {n} instructions but the file holds "
                               f"{len(body)} bytes of them (truncated or padded)")
        if zlib.crc32(body) != crc:
            raise ProgramError(f"{source}: checksum mismatch, the program is corrupt")
        words = [int.from_bytes(body[i:i + INSN_BYTES], "little")
                 for i in range(0, len(body), INSN_BYTES)]
        return cls(words=words, config_hash=cfg)

    def check_config(self, config, *, source="program"):
        if self.config_hash != config.hash:
            raise ProgramError(
                f"{source} was compiled for another configuration (hash "
                f"{self.config_hash.hex()}), not for {config.name!r} ({config.hash.hex()})")

    def listing(self) -> str:
        lines = []
        for i, w in enumerate(self.words):
            c = self.comments[i] if i < len(self.comments) else ""
            lines.append(f"{i:6d}  {disasm(w)}" + (f"    ; {c}" if c else ""))
        return "\n".join(lines)

    def __len__(self):
        return len(self.words)


@dataclass(frozen=True)
class Symbol:
    """A tensor placed in external memory: ``shape`` stored row-major with ``row_stride``
    bytes between rows (rows may be padded), ``dtype`` a numpy dtype name."""
    addr: int
    shape: tuple
    dtype: str
    row_stride: int

    def nbytes(self):
        return self.row_stride * self.shape[0] if len(self.shape) == 2 else \
            int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass
class MemoryImage:
    """External-memory contents the program starts from, with named tensors."""
    data: bytearray
    symbols: dict = field(default_factory=dict)

    @property
    def size(self):
        return len(self.data)

    def copy(self):
        return MemoryImage(bytearray(self.data), dict(self.symbols))

    def write(self, name, array, *, row_stride=None):
        """Place ``array`` (1-D or 2-D) at the end, 64-byte aligned, rows padded to
        ``row_stride`` bytes; return its address."""
        array = np.ascontiguousarray(array)
        addr = (len(self.data) + 63) // 64 * 64
        if array.ndim == 2:
            rs = row_stride or array.shape[1] * array.itemsize
            buf = np.zeros((array.shape[0], rs), np.uint8)
            buf[:, :array.shape[1] * array.itemsize] = array.view(np.uint8).reshape(
                array.shape[0], -1)
            raw = buf.tobytes()
        else:
            rs = 0
            raw = array.tobytes()
        self.data.extend(b"\0" * (addr - len(self.data)))
        self.data.extend(raw)
        self.symbols[name] = Symbol(addr, tuple(array.shape), array.dtype.name, rs)
        return addr

    def reserve(self, name, shape, dtype, *, row_stride):
        return self.write(name, np.zeros(shape, dtype), row_stride=row_stride)

    def read(self, name):
        s = self.symbols[name]
        dt = np.dtype(s.dtype)
        if len(s.shape) == 2:
            raw = np.frombuffer(self.data, np.uint8, s.row_stride * s.shape[0], s.addr)
            raw = raw.reshape(s.shape[0], s.row_stride)[:, :s.shape[1] * dt.itemsize]
            return np.ascontiguousarray(raw).view(dt).reshape(s.shape)
        return np.frombuffer(self.data, dt, int(np.prod(s.shape)), s.addr).reshape(s.shape)

    # --- files ------------------------------------------------------------------------
    def save(self, path):
        meta = {k: [v.addr, list(v.shape), v.dtype, v.row_stride] for k, v in self.symbols.items()}
        np.savez(path, data=np.frombuffer(bytes(self.data), np.uint8),
                 meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))

    @classmethod
    def load(cls, path):
        if Path(path).is_dir():
            raise ProgramError(f"{path} is a directory, not a memory image (.mem.npz)")
        try:
            with np.load(path) as z:
                data = bytearray(z["data"].tobytes())
                meta = json.loads(z["meta"].tobytes())
        except Exception as e:   # a corrupt file can fail in zipfile, numpy or json
            why = str(e).split(". ")[0][:80]
            raise ProgramError(f"{path}: not a memory image (.mem.npz written by llmaccel "
                               f"compile): {type(e).__name__}: {why}") from None
        syms = {k: Symbol(a, tuple(s), d, r) for k, (a, s, d, r) in meta.items()}
        return cls(data, syms)


def load_program(path, cfg):
    """The program in file ``path``, checked to belong to configuration ``cfg``."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such program file")
    if p.is_dir():
        progs = sorted(x.name for x in p.glob("*.prog"))
        hint = f"; it holds {', '.join(progs[:6])}{' ...' if len(progs) > 6 else ''}" \
            if progs else ""
        raise UserError(f"{path} is a directory: give one program file (.prog){hint}")
    prog = Program.from_bytes(p.read_bytes(), source=str(path))
    prog.check_config(cfg, source=str(path))
    return prog
