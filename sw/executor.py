"""The one executor interface: ``run(program, memory) -> (memory, stats)``.

Golden model, Verilator fast runner, pyverilator interactive runner and (later) a board all
implement it. ``stats`` is a dict; every executor fills ``error`` (an ``ErrorCode`` name or
None) and the counters in ``hw.isa.Counter`` that it models, lower-cased.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from hw.isa import INSN_BYTES
from .program import MemoryImage, Program, ProgramError

__all__ = ["Executor", "place_program", "program_image"]


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
