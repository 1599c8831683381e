"""The UART host link's framed protocol, defined once for the hardware (boards/link.py) and
the host runtime (boards/host.py).

Every frame is ``SOF | code | seq | len (2, LE) | payload (len bytes) | CRC-16 (2, BE)``; the
CRC (CRC-16/CCITT-FALSE) covers every byte from SOF to the end of the payload. The host sends
requests (SOF ``0xA5``, code = a ``Cmd``); the board answers each with one reply (SOF
``0x5A``, code = a ``Status``, the request's ``seq`` echoed). The host waits for the reply
before sending the next request (stop and wait), so the board never needs flow control.

=======  ============================  =============================================
command  request payload               reply payload (status OK)
=======  ============================  =============================================
INFO     --                            ``INFO_LAYOUT`` (magic, version, config hash...)
WRITE    addr (4, LE), data            --   (addr and len(data) multiples of bus_bytes)
READ     addr (4, LE), count (2, LE)   count bytes of memory
START    prog_addr (4, LE)             --   (resets the accelerator, then starts it)
STATUS   --                            flags, error code, then every counter (8, LE)
=======  ============================  =============================================

A request is executed only when its CRC checks. WRITE data is buffered on chip and committed
to memory only after the CRC, so a corrupted frame never writes anything. START is not
repeated when the same ``seq`` arrives twice (a retry after a lost reply), so a retried
START never restarts a program that has already begun.
"""

from __future__ import annotations

import enum
import struct

from amaranth.lib.crc import catalog

from hw.isa import Counter

__all__ = ["SOF_REQ", "SOF_REP", "Cmd", "Status", "CRC", "crc16", "encode", "decode_header",
           "MAX_PAYLOAD", "HEADER_BYTES", "TRAILER_BYTES", "LINK_VERSION", "INFO_MAGIC",
           "INFO_BYTES", "info_bytes", "parse_info", "status_bytes", "Flags"]

SOF_REQ = 0xA5
SOF_REP = 0x5A
HEADER_BYTES = 5
TRAILER_BYTES = 2
#: Largest payload of one frame (the board buffers a whole request before acting on it).
MAX_PAYLOAD = 256 + 4
LINK_VERSION = 1
INFO_MAGIC = b"LLMA"

#: The CRC, as an amaranth ``crc.Parameters`` for bytes: hardware and host share it.
CRC = catalog.CRC16_CCITT_FALSE(data_width=8)


class Cmd(enum.IntEnum):
    INFO = 1
    WRITE = 2
    READ = 3
    START = 4
    STATUS = 5


class Status(enum.IntEnum):
    OK = 0
    BAD_CRC = 1         # the request's CRC did not check (nothing was executed)
    BAD_CMD = 2         # unknown command
    BAD_LEN = 3         # payload too long or the wrong length for the command
    BAD_ADDR = 4        # misaligned, or beyond the board's memory
    BUSY = 5            # memory access while the accelerator runs


class Flags(enum.IntFlag):
    RUNNING = 1
    DONE = 2
    ERROR = 4


def crc16(data: bytes) -> int:
    return CRC.compute(data)


def encode(sof: int, code: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError("payload too long")
    head = bytes([sof, code & 0xFF, seq & 0xFF]) + struct.pack("<H", len(payload))
    body = head + bytes(payload)
    return body + struct.pack(">H", crc16(body))


def decode_header(head: bytes):
    """``(sof, code, seq, length)`` of a 5-byte frame header."""
    sof, code, seq, length = struct.unpack("<BBBH", head)
    return sof, code, seq, length


# INFO reply: magic, link version, bus bytes, max payload, memory bytes, config hash, clock kHz
_INFO = struct.Struct("<4sBBHI8sI")
INFO_BYTES = _INFO.size


def info_bytes(config, clock_hz: int) -> bytes:
    """The INFO reply payload of a board built for ``config`` at ``clock_hz``."""
    return _INFO.pack(INFO_MAGIC, LINK_VERSION, config.bus_bytes, MAX_PAYLOAD,
                      config.dram_bytes, config.hash, clock_hz // 1000)


def parse_info(payload: bytes) -> dict:
    if len(payload) != INFO_BYTES:
        raise ValueError(f"INFO reply of {len(payload)} bytes, expected {INFO_BYTES}")
    magic, ver, bb, maxp, mem, h, khz = _INFO.unpack(payload)
    return {"magic": magic, "version": ver, "bus_bytes": bb, "max_payload": maxp,
            "dram_bytes": mem, "config_hash": h, "clock_hz": khz * 1000}


def status_bytes() -> int:
    """Length of the STATUS reply payload: flags, error code, one 64-bit word per counter."""
    return 2 + 8 * len(Counter)
