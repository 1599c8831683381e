"""The one executor interface: ``run(program, memory) -> (memory, stats)``.

Golden model, Verilator fast runner, pyverilator interactive runner and a board all
implement it. ``stats`` is a dict; every executor fills ``error`` (an ``ErrorCode`` name or
None) and the counters in ``hw.isa.Counter`` that it models, lower-cased.

A ``Session`` keeps one memory image (weights, KV cache, programs) in an executor's external
memory and runs many programs against it: the data goes to the device once. The golden
model, the fast runner and the board executor give it three primitives: ``mem_write(addr,
bytes)``, ``mem_read(addr, n) -> bytes`` and ``execute(prog_addr, pos) -> stats`` (reset the
accelerator, not the memory, and run the program at ``prog_addr`` at position ``pos``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import numpy as np

from hw.isa import INSN_BYTES
from hw.position import POS_BITS
from .program import MemoryImage, Program, ProgramError

__all__ = ["Executor", "place_program", "program_image", "check_pos", "Session"]


class Executor(Protocol):
    config: object

    def run(self, program: Program, memory: MemoryImage) -> tuple[MemoryImage, dict]: ...


def place_program(config, program: Program, memory: MemoryImage):
    """Check the program belongs to ``config`` and lay out external memory: the data image
    at address 0, the instruction words right after it (16-byte aligned).

    Returns ``(dram, prog_addr)`` with ``dram`` a zero-filled uint8 array of
    ``config.dram_bytes``.
    """
    program.check_config(config)
    prog_addr = (memory.size + INSN_BYTES - 1) // INSN_BYTES * INSN_BYTES
    end = prog_addr + len(program) * INSN_BYTES
    if end > config.dram_bytes:
        raise ProgramError(f"memory image ({memory.size} bytes) and program "
                           f"({len(program) * INSN_BYTES} bytes) do not fit in the "
                           f"{config.dram_bytes}-byte external memory of {config.name!r}")
    dram = np.zeros(config.dram_bytes, np.uint8)
    dram[:memory.size] = np.frombuffer(bytes(memory.data), np.uint8)
    dram[prog_addr:end] = np.frombuffer(program.body(), np.uint8)
    return dram, prog_addr


def program_image(config, program: Program, memory: MemoryImage):
    """``place_program`` cut to the bytes in use (data image and program): what a runner
    outside this process loads. Returns ``(image, prog_addr)``."""
    dram, prog_addr = place_program(config, program, memory)
    return dram[:prog_addr + len(program) * INSN_BYTES], prog_addr


def check_pos(config, pos) -> int:
    """``pos`` as the run's position, checked: 16 bits, and 0 on a configuration without the
    position register (it comes with the SFU)."""
    if not isinstance(pos, (int, np.integer)) or not 0 <= pos < (1 << POS_BITS):
        raise ProgramError(f"position {pos!r} is not in 0..{(1 << POS_BITS) - 1}")
    if pos and not config.sfu:
        raise ProgramError(f"config {config.name!r} has no position register (it comes with "
                           f"sfu = true); position {pos} cannot be given")
    return int(pos)


class Session:
    """``memory`` and ``programs`` (a dict name -> Program) loaded once into ``executor``;
    ``run(name, pos)`` runs one of them against what the memory holds now.

    Layout: the data image at address 0, the programs after it in the dict's order (each
    16-byte aligned). ``addr[name]`` is a program's address.
    """

    def __init__(self, executor, memory: MemoryImage, programs: dict):
        cfg = executor.config
        self.executor, self.config, self.symbols = executor, cfg, dict(memory.symbols)
        self.addr = {}
        at = (memory.size + INSN_BYTES - 1) // INSN_BYTES * INSN_BYTES
        words = []
        for name, prog in programs.items():
            prog.check_config(cfg, source=f"program {name!r}")
            self.addr[name] = at + sum(len(w) for w in words)
            words.append(prog.body())
        end = at + sum(len(w) for w in words)
        if end > cfg.dram_bytes:
            raise ProgramError(f"memory image ({memory.size} bytes) and programs "
                               f"({end - at} bytes) do not fit in the {cfg.dram_bytes}-byte "
                               f"external memory of {cfg.name!r}")
        executor.mem_write(0, bytes(memory.data))
        executor.mem_write(at, b"".join(words))
        self.runs = 0

    def write(self, name, array):
        """Write ``array`` (its bytes) at symbol ``name``'s address."""
        sym = self.symbols[name]
        tmp = MemoryImage(bytearray())
        tmp.write(name, np.asarray(array, sym.dtype), row_stride=sym.row_stride or None)
        self.executor.mem_write(sym.addr, bytes(tmp.data))

    def write_at(self, addr, data: bytes):
        self.executor.mem_write(addr, bytes(data))

    def read(self, name):
        """Symbol ``name``'s array as the memory holds it now."""
        sym = self.symbols[name]
        raw = self.executor.mem_read(sym.addr, sym.nbytes())
        return MemoryImage(bytearray(raw), {name: replace(sym, addr=0)}).read(name).copy()

    def run(self, name, pos=0) -> dict:
        """Run program ``name`` at position ``pos``; its stats (``error`` set on failure)."""
        pos = check_pos(self.config, pos)
        self.runs += 1
        return self.executor.execute(self.addr[name], pos)
