"""The host runtime: a board as one more executor, over a serial port.

``Link`` speaks the framed protocol of boards/protocol.py with stop-and-wait retries: a
reply that times out, arrives garbled, fails its CRC or echoes the wrong sequence number is
retried (after waiting for the board to drop any half frame), up to ``retries`` times, then
a ``LinkError`` says what went wrong. Nothing blocks without a timeout.

``BoardExecutor.run(program, memory) -> (memory, stats)`` checks the board runs a bitstream
for the program's configuration, writes the memory image and program, starts, polls status
and counters until done, and reads the memory back.
"""

from __future__ import annotations

import struct
import time

from hw.isa import Counter, ErrorCode
from sw.errors import UserError
from sw.executor import check_pos, program_image
from sw.program import MemoryImage, Program
from .protocol import (HEADER_BYTES, INFO_BYTES, INFO_MAGIC, LINK_VERSION, MAX_PAYLOAD, SOF_REP,
                       SOF_REQ, TRAILER_BYTES, Cmd, Flags, Status, crc16, decode_header,
                       encode, parse_info, status_bytes)

__all__ = ["Link", "LinkError", "BoardExecutor", "open_port"]

CHUNK = 256     # data bytes per WRITE/READ frame (a multiple of every bus width)


class LinkError(UserError):
    """The board did not answer correctly, or refused a request."""


def open_port(port, baud):
    """Open a real serial port with pyserial (a clear error when it cannot)."""
    try:
        import serial
    except ImportError:
        raise LinkError("pyserial is not installed (pip install pyserial)") from None
    try:
        return serial.Serial(port, baudrate=baud, timeout=0.1)
    except (serial.SerialException, OSError) as e:
        raise LinkError(f"cannot open serial port {port}: {e}") from None


class Link:
    """Request/reply transactions over a pyserial-like ``port``.

    Parameters
    ----------
    retries : int
        Attempts after the first before giving up.
    slack : float
        Seconds a reply may take beyond its transfer time (USB latency; small in simulation).
    resync : float
        Seconds to wait after a failure so the board drops a half-received frame.
    """

    def __init__(self, port, *, retries=4, slack=0.05, resync=0.03):
        self.port, self.retries, self.slack, self.resync = port, retries, slack, resync
        self.seq = 0
        self.stats = {"frames": 0, "retries": 0, "bytes_out": 0, "bytes_in": 0}

    def _byte_time(self):
        return 10.0 / float(self.port.baudrate)

    def transact(self, cmd: Cmd, payload: bytes = b"", reply_max: int = 0) -> bytes:
        what = cmd.name if isinstance(cmd, Cmd) else f"command {cmd:#x}"
        self.seq = (self.seq + 1) & 0xFF
        frame = encode(SOF_REQ, cmd, self.seq, payload)
        wait = (len(frame) + HEADER_BYTES + reply_max + TRAILER_BYTES) * self._byte_time()
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                self._drain()
            self.port.reset_input_buffer()
            self.port.write(frame)
            self.stats["frames"] += 1
            self.stats["bytes_out"] += len(frame)
            self.port.timeout = 2 * wait + self.slack
            head = self.port.read(HEADER_BYTES)
            if len(head) < HEADER_BYTES:
                why = "no reply (timeout)" if not head else "reply cut short (timeout)"
                continue
            sof, status, seq, n = decode_header(head)
            if sof != SOF_REP or n > MAX_PAYLOAD:
                why = "garbled reply header"
                continue
            rest = self.port.read(n + TRAILER_BYTES)
            self.stats["bytes_in"] += len(head) + len(rest)
            if len(rest) < n + TRAILER_BYTES:
                why = "reply cut short (timeout)"
                continue
            body = rest[:n]
            if crc16(head + body) != int.from_bytes(rest[n:], "big"):
                why = "reply failed its CRC"
                continue
            if seq != self.seq:
                why = f"reply to another request (seq {seq}, expected {self.seq})"
                continue
            if status == Status.BAD_CRC:
                why = "the board received a corrupted request"
                continue
            if status != Status.OK:
                try:
                    name = Status(status).name
                except ValueError:
                    name = f"status {status}"
                raise LinkError(f"the board refused {what}: {name}")
            return body
        raise LinkError(f"no valid reply to {what} after {self.retries + 1} attempts "
                        f"(last: {why}) on {getattr(self.port, 'port', self.port)}; is the "
                        f"board running an llmaccel bitstream at {self.port.baudrate:g} baud?")

    def _drain(self):
        """Wait out the board's idle timeout, discarding whatever arrives."""
        self.port.timeout = self.resync
        while self.port.read(4096):
            pass

    # --- commands -------------------------------------------------------------------------
    def info(self) -> dict:
        return parse_info(self.transact(Cmd.INFO, reply_max=INFO_BYTES))

    def write(self, addr: int, data: bytes):
        for off in range(0, len(data), CHUNK):
            self.transact(Cmd.WRITE, struct.pack("<I", addr + off) + data[off:off + CHUNK])

    def read(self, addr: int, n: int) -> bytes:
        out = bytearray()
        for off in range(0, n, CHUNK):
            k = min(CHUNK, n - off)
            got = self.transact(Cmd.READ, struct.pack("<IH", addr + off, k), reply_max=k)
            if len(got) != k:
                raise LinkError(f"READ returned {len(got)} bytes, expected {k}")
            out += got
        return bytes(out)

    def start(self, prog_addr: int):
        self.transact(Cmd.START, struct.pack("<I", prog_addr))

    def status(self) -> dict:
        body = self.transact(Cmd.STATUS, reply_max=status_bytes())
        if len(body) != status_bytes():
            raise LinkError(f"STATUS reply of {len(body)} bytes, expected {status_bytes()}")
        flags, code = Flags(body[0] & 7), body[1]
        counters = struct.unpack(f"<{len(Counter)}Q", body[2:])
        return {"running": Flags.RUNNING in flags, "done": Flags.DONE in flags,
                "error": ErrorCode(code).name if Flags.ERROR in flags else None,
                **{c.name.lower(): counters[c.value] for c in Counter}}


class BoardExecutor:
    """Executor on a board (real, or ``boards.sim.SimSerial``) behind a serial port.

    Parameters
    ----------
    config : AccelConfig the board's bitstream was built for
    port : a device path (opened with pyserial at ``baud``) or an open port object
    timeout : float
        Wall-clock seconds a program may run before the run is abandoned.
    """

    name = "board"

    def __init__(self, config, port, *, baud=1_000_000, timeout=600.0, **link_opts):
        self.config = config
        if isinstance(port, str):
            port = open_port(port, baud)
        self.link = Link(port, **link_opts)
        self.timeout = timeout
        self._checked = False

    def check(self) -> dict:
        info = self.link.info()
        if info["magic"] != INFO_MAGIC or info["version"] != LINK_VERSION:
            raise LinkError(f"the board answers but is not an llmaccel link version "
                            f"{LINK_VERSION} (magic {info['magic']!r}, version {info['version']})")
        if info["config_hash"] != self.config.hash:
            raise LinkError(f"the board runs a bitstream for another configuration (hash "
                            f"{info['config_hash'].hex()}, {self.config.name!r} is "
                            f"{self.config.hash.hex()}); rebuild it with `llmaccel bitstream`")
        self._checked = True
        return info

    def run(self, program: Program, memory: MemoryImage):
        if not self._checked:
            self.check()
        image, prog_addr = program_image(self.config, program, memory)
        bb = self.config.bus_bytes
        data = bytes(image) + b"\0" * (-len(image) % bb)
        t0 = time.perf_counter()
        self.link.write(0, data)
        t_load = time.perf_counter() - t0
        st = self._start_and_wait(prog_addr)
        t_run = time.perf_counter() - t0 - t_load
        out = self.link.read(0, memory.size)
        st.update(load_s=t_load, run_s=t_run, wall_s=time.perf_counter() - t0)
        return MemoryImage(bytearray(out), dict(memory.symbols)), st

    def _start_and_wait(self, prog_addr) -> dict:
        """START the program (the board resets the accelerator first) and poll its status
        until it is done or the timeout passes; the run's stats."""
        t0 = time.perf_counter()
        self.link.start(prog_addr)
        polls = 0
        # counters narrower than 64 bits (config.counter_bits) wrap; every poll adds each one's
        # increase since the last, so the totals are exact while polls come faster than a
        # wrap (at 16 MACs per cycle a 32-bit counter wraps after 2**28 cycles: 11 s at 24 MHz)
        wrap = 1 << self.config.counter_bits
        names = [c.name.lower() for c in Counter]
        total, last = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
        while True:
            st = self.link.status()
            polls += 1
            for k in names:
                total[k] += (st[k] - last[k]) % wrap
                last[k] = st[k]
            st.update(total)
            if st["done"]:          # (an error raises it too, once the counters are final)
                break
            if time.perf_counter() - t0 > self.timeout:
                st["error"] = "TIMEOUT"
                break
        stats = {k: v for k, v in st.items() if k not in ("running", "done")}
        stats.update(executor=self.name, polls=polls, **{f"link_{k}": v
                                                         for k, v in self.link.stats.items()})
        return stats

    # --- session primitives (sw.executor.Session) --------------------------------------------
    def mem_write(self, addr, data: bytes):
        if not self._checked:
            self.check()
        bb = self.config.bus_bytes
        head = addr % bb
        data = self.link.read(addr - head, head) + bytes(data) if head else bytes(data)
        tail = -len(data) % bb
        if tail:
            data += self.link.read(addr - head + len(data), tail)
        self.link.write(addr - head, data)

    def mem_read(self, addr, n) -> bytes:
        return self.link.read(addr, n)

    def execute(self, prog_addr, pos=0) -> dict:
        check_pos(self.config, pos)
        if pos:
            raise LinkError("the board link's START carries no position (the board presets "
                            "build no SFU, which the position comes with)")
        return self._start_and_wait(prog_addr)
