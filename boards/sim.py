"""The board without a board: the Verilated board top (accelerator + memory + UART link)
behind a serial-port object, so the host runtime runs unchanged against it.

``SimSerial`` has the part of pyserial's ``Serial`` the host runtime uses (``write``,
``read`` with ``timeout``, ``reset_input_buffer``, ``baudrate``). Time is simulated time:
a read with a 10 ms timeout advances the board by 10 ms of clock cycles, so timeouts are
exact and fast. Fault hooks corrupt or drop bytes in either direction to test the link's
recovery.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from sim.build import (cached_build, cpu_id, load_library, run_logged, verilate_model,
                       verilator_env)
from sim.fast import CXXFLAGS, VERILATOR_FLAGS
from .top import BoardCore

__all__ = ["BoardSim", "SimSerial", "PtyBoard", "build_board_model", "SIM_DIVISOR"]

HARNESS = Path(__file__).resolve().parent / "board_harness.cpp"
TOP = "board"
#: Clock cycles per UART bit in simulation (a real board runs at 1 Mbaud or so)
SIM_DIVISOR = 4

_SIGS = {
    "board_new": ([ctypes.c_int], ctypes.c_void_p),
    "board_free": ([ctypes.c_void_p], None),
    "board_send": ([ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64], None),
    "board_run": ([ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64], ctypes.c_uint64),
    "board_recv": ([ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64], ctypes.c_uint64),
    "board_available": ([ctypes.c_void_p], ctypes.c_uint64),
    "board_sending": ([ctypes.c_void_p], ctypes.c_uint64),
    "board_cycle": ([ctypes.c_void_p], ctypes.c_uint64),
    "board_leds": ([ctypes.c_void_p], ctypes.c_int),
}


def board_verilog(config, clock_hz, divisor, idle):
    from hw.synth import component_verilog
    return component_verilog(BoardCore(config, clock_hz=clock_hz, divisor=divisor, idle=idle),
                             TOP)


def _build(tmp: Path, progress, verilog: str):
    (tmp / f"{TOP}.v").write_text(verilog)
    log = tmp / "build.log"
    inc, libs = verilate_model(tmp, progress, sources=[f"{TOP}.v"], top=TOP,
                               flags=VERILATOR_FLAGS, cxxflags=CXXFLAGS, log=log)
    progress("linking the board library")
    run_logged(["g++", *CXXFLAGS, *inc, str(HARNESS), "-shared", "-o", "libboard.so", *libs],
               cwd=tmp, env=verilator_env(), log=log)


def build_board_model(config, *, clock_hz, divisor=SIM_DIVISOR, idle=None, quiet=False):
    idle = idle or 64 * 10 * divisor
    verilog = board_verilog(config, clock_hz, divisor, idle)
    key = [verilog, " ".join(VERILATOR_FLAGS + CXXFLAGS), cpu_id(), HARNESS.read_bytes()]
    return cached_build("board", key, lambda tmp, progress: _build(tmp, progress, verilog),
                        quiet=quiet)


class BoardSim:
    """One simulated board (a Verilated ``BoardCore``)."""

    def __init__(self, config, *, clock_hz=None, divisor=SIM_DIVISOR, idle=None, quiet=False):
        self.config = config
        self.clock_hz = clock_hz or config.clock_mhz * 1_000_000
        self.divisor = divisor
        self.idle = idle or 64 * 10 * divisor
        d = build_board_model(config, clock_hz=self.clock_hz, divisor=divisor, idle=self.idle,
                              quiet=quiet)
        self.lib = load_library(d / "libboard.so", _SIGS)
        self.h = self.lib.board_new(divisor)

    @property
    def baudrate(self):
        return self.clock_hz / self.divisor

    @property
    def cycle(self):
        return self.lib.board_cycle(self.h)

    def leds(self):
        v = self.lib.board_leds(self.h)
        return {"running": bool(v & 1), "done": bool(v & 2), "error": bool(v & 4)}

    def close(self):
        if getattr(self, "h", None):
            self.lib.board_free(self.h)
            self.h = None

    def __del__(self):
        self.close()


class SimSerial:
    """A serial port whose other end is a ``BoardSim``.

    Parameters
    ----------
    board : BoardSim
    timeout : float
        Seconds (simulated) a ``read`` waits, as pyserial's.
    corrupt_tx, corrupt_rx : callable(index, byte) -> byte or None
        Fault hooks on every byte sent to / received from the board (``index`` counts bytes
        in that direction from 0); return the byte to pass, a changed byte, or None to drop.
    """

    def __init__(self, board: BoardSim, *, timeout=0.01, corrupt_tx=None, corrupt_rx=None):
        self.board, self.timeout = board, timeout
        self.corrupt_tx, self.corrupt_rx = corrupt_tx, corrupt_rx
        self.n_tx = self.n_rx = 0
        self.port = f"sim:{board.config.name}"
        self.is_open = True

    @property
    def baudrate(self):
        return self.board.baudrate

    def write(self, data: bytes) -> int:
        out = bytearray()
        for b in data:
            v = self.corrupt_tx(self.n_tx, b) if self.corrupt_tx else b
            self.n_tx += 1
            if v is not None:
                out.append(v)
        self.board.lib.board_send(self.board.h, bytes(out), len(out))
        return len(data)

    def flush(self):
        lib, h = self.board.lib, self.board.h
        while lib.board_sending(h):
            lib.board_run(h, 10 * self.board.divisor, 1 << 62)

    def read(self, n: int) -> bytes:
        lib, h = self.board.lib, self.board.h
        budget = int((self.timeout or 0) * self.board.clock_hz)
        got = bytearray()
        while len(got) < n:
            avail = lib.board_available(h)
            if avail:
                buf = ctypes.create_string_buffer(min(avail, n - len(got)))
                k = lib.board_recv(h, buf, len(buf))
                for b in buf.raw[:k]:
                    v = self.corrupt_rx(self.n_rx, b) if self.corrupt_rx else b
                    self.n_rx += 1
                    if v is not None:
                        got.append(v)
                continue
            if budget <= 0:
                break
            ran = lib.board_run(h, budget, 1)
            budget -= ran
        return bytes(got)

    def reset_input_buffer(self):
        lib, h = self.board.lib, self.board.h
        n = lib.board_available(h)
        if n:
            lib.board_recv(h, ctypes.create_string_buffer(n), n)

    def close(self):
        self.is_open = False


class PtyBoard:
    """A simulated board behind a pseudo-terminal: host software opens ``path`` with pyserial
    (any baud rate) exactly as it would open a real board's port. The simulation advances
    while bytes are in flight or the accelerator runs, and sleeps otherwise."""

    def __init__(self, board: BoardSim, chunk=20000):
        import os
        import threading
        import tty
        self.board, self.chunk = board, chunk
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _serve(self):
        import os
        import select
        lib, h = self.board.lib, self.board.h
        buf = ctypes.create_string_buffer(65536)
        while not self._stop.is_set():
            busy = lib.board_sending(h) or self.board.leds()["running"]
            r, _, _ = select.select([self.master], [], [], 0 if busy else 0.02)
            if r:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    break
                lib.board_send(h, data, len(data))
                busy = True
            if busy:
                lib.board_run(h, self.chunk, 1 << 62)
            n = lib.board_recv(h, buf, len(buf))
            if n:
                os.write(self.master, buf.raw[:n])

    def stop(self):
        import os
        self._stop.set()
        self.thread.join()
        os.close(self.master)
        os.close(self._slave)
