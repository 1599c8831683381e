"""The UART host link end to end, without a board: the host runtime (boards.host) talks to
the Verilated board top (accelerator + on-chip memory + link RTL) through a simulated UART.
"""

import struct

import pytest

from boards.host import BoardExecutor, Link, LinkError
from boards.protocol import SOF_REQ, Cmd, encode
from boards.sim import BoardSim, SimSerial
from compiler.randprog import random_program
from hw.config import load_config
from test_rtl_random import check_program

# simulated link timing: replies come within a few byte times; the board drops a half
# frame after 64 idle byte times, so waiting 2x that resynchronises
FAST = {"slack": 0.0005, "resync": 0.0005}


@pytest.fixture(scope="module")
def cfg():
    return load_config("ice40")


@pytest.fixture(scope="module")
def board(cfg):
    b = BoardSim(cfg, quiet=True)
    yield b
    b.close()


@pytest.mark.parametrize("seed", range(4))
def test_board_runs_programs_bit_exact(cfg, board, seed):
    ex = BoardExecutor(cfg, SimSerial(board), **FAST)
    info = ex.check()
    assert info["dram_bytes"] == cfg.dram_bytes and info["bus_bytes"] == cfg.bus_bytes
    st = check_program(cfg, ex, seed)
    assert st["link_retries"] == 0


@pytest.mark.slow
def test_board_with_register_slices(cfg):
    """Above LOW_CLOCK_MHZ the board top puts register slices between the accelerator and
    the memory (the default 24 MHz board above has none): still bit-exact."""
    from hw.timing import LOW_CLOCK_MHZ
    b = BoardSim(cfg, clock_hz=int(2 * LOW_CLOCK_MHZ * 1e6), quiet=True)
    try:
        st = check_program(cfg, BoardExecutor(cfg, SimSerial(b), **FAST), 5)
        assert st["link_retries"] == 0
    finally:
        b.close()


@pytest.mark.parametrize("direction", ["to_board", "from_board", "both", "drop"])
def test_link_recovers_from_corrupted_frames(cfg, board, direction):
    """Bytes corrupted or dropped on the wire: the CRC catches it, the host retries, the
    result is still bit-exact and nothing was written twice or to the wrong place."""
    seed = 11
    hits = set(range(7, 20000, 701))    # sparser than the longest frame (267 bytes)

    def flip(i, b):
        return b ^ (1 << (i % 8)) if i in hits else b

    def drop(i, b):
        return None if i in hits else b
    hooks = {"to_board": {"corrupt_tx": flip}, "from_board": {"corrupt_rx": flip},
             "both": {"corrupt_tx": flip, "corrupt_rx": flip},
             "drop": {"corrupt_tx": drop}}[direction]
    ex = BoardExecutor(cfg, SimSerial(board, **hooks), retries=6, **FAST)
    st = check_program(cfg, ex, seed)
    assert st["link_retries"] > 0, "the faults never hit a frame"


def test_link_gives_up_with_a_clear_error(cfg, board):
    """A line that corrupts everything: a clear LinkError after the retries, no hang."""
    ex = BoardExecutor(cfg, SimSerial(board, corrupt_tx=lambda i, b: b ^ 0x10), retries=2,
                       **FAST)
    with pytest.raises(LinkError, match=r"no valid reply to INFO after 3 attempts"):
        ex.check()


class DeadPort:
    """A serial port with nothing on the other end."""
    baudrate = 1_000_000
    port = "/dev/null-board"
    timeout = 0.0

    def write(self, data):
        return len(data)

    def read(self, n):
        return b""

    def reset_input_buffer(self):
        pass


def test_no_board_times_out_clearly(cfg):
    ex = BoardExecutor(cfg, DeadPort(), retries=1, slack=0.001, resync=0.001)
    with pytest.raises(LinkError, match=r"no reply \(timeout\).*/dev/null-board"):
        ex.check()


def test_board_for_another_config_is_refused(cfg, board):
    other = load_config("tiny")
    ex = BoardExecutor(other, SimSerial(board), **FAST)
    with pytest.raises(LinkError, match="another configuration"):
        ex.check()


def test_board_refuses_bad_requests(cfg, board):
    link = Link(SimSerial(board), **FAST)
    with pytest.raises(LinkError, match="BAD_ADDR"):          # beyond the memory
        link.write(cfg.dram_bytes - 4, b"\0" * 8)
    with pytest.raises(LinkError, match="BAD_ADDR"):          # misaligned
        link.write(2, b"\0" * 4)
    with pytest.raises(LinkError, match="BAD_ADDR"):
        link.read(cfg.dram_bytes - 2, 4)
    # addresses whose low bits are in range but high bits are not (the link keeps only the
    # memory's width once it has checked the whole address)
    for addr in (cfg.dram_bytes, 1 << 31, (1 << 32) - 4, cfg.dram_bytes << 1):
        with pytest.raises(LinkError, match="BAD_ADDR"):
            link.read(addr, 4)
        with pytest.raises(LinkError, match="BAD_ADDR"):
            link.write(addr, b"\0" * 4)
    # a START there runs into the accelerator's own check (the link keeps that a high bit
    # was set): FETCH_RANGE, as the golden model says of a program counter past memory
    for addr in (1 << 31, cfg.dram_bytes << 1):
        link.start(addr)
        st = link.status()
        while not st["done"]:
            st = link.status()
        assert st["error"] == "FETCH_RANGE", (hex(addr), st["error"])
    link.write(cfg.dram_bytes - 4, b"\1\2\3\4")            # the last word is fine
    assert link.read(cfg.dram_bytes - 4, 4) == b"\1\2\3\4"
    with pytest.raises(LinkError, match="BAD_CMD"):
        link.transact(0x7E)
    with pytest.raises(LinkError, match="BAD_LEN"):           # START without its address
        link.transact(Cmd.START, b"\0")
    # memory survives the refused requests; reads and writes round trip at any alignment
    data = bytes(range(256)) * 2
    link.write(1024, data)
    assert link.read(1024, len(data)) == data
    assert link.read(1027, 5) == data[3:8]


def test_run_after_an_error_mid_transfer(cfg, board):
    """A program that fails while a long LOAD is still streaming (a MATMUL out of range)
    reports the golden model's error; the next program runs bit-exact (nothing of the
    aborted transfer, such as a response still waiting at the memory, reaches it)."""
    import numpy as np
    from compiler.asm import Assembler
    from hw.isa import Buffer
    from sw.golden import Machine
    from sw.program import MemoryImage
    mem = MemoryImage(bytearray())
    rows = cfg.act_depth
    act = mem.write("act", np.ones((rows, cfg.rows), np.int8))
    a = Assembler(cfg)
    a.load(Buffer.ACT, 0, act, rows, cfg.rows)
    a.matmul(cfg.act_depth - 1, 0, 0, 2)        # act_addr + k > act_depth
    ex = BoardExecutor(cfg, SimSerial(board), **FAST)
    _, gs = Machine(cfg).run(a.program(), mem)
    _, st = ex.run(a.program(), mem)
    assert gs["error"] == "SP_RANGE" and st["error"] == gs["error"], (gs["error"], st["error"])
    assert st["bytes_read"] < rows * cfg.rows      # it stopped mid-transfer
    check_program(cfg, ex, 5)


def test_retried_start_does_not_restart(cfg, board):
    """The same START (same seq) twice in a row -- a retry after a lost reply -- runs the
    program once: the second one is acknowledged without resetting the accelerator."""
    rp = random_program(cfg, 3)
    ex = BoardExecutor(cfg, SimSerial(board), **FAST)
    ex.run(rp.program, rp.memory)
    port, lib, h = ex.link.port, board.lib, board.h
    from sw.executor import program_image
    _, prog_addr = program_image(cfg, rp.program, rp.memory)
    start = encode(SOF_REQ, Cmd.START, 200, struct.pack("<I", prog_addr))
    port.write(start)
    port.timeout = 0.01
    assert port.read(7)[1] == 0
    while not board.leds()["done"]:
        lib.board_run(h, 1, 1 << 62)
    port.write(start)                   # the retry
    while lib.board_available(h) < 7:
        lib.board_run(h, 1, 1 << 62)
        assert board.leds()["done"], "a retried START restarted the program"
    assert port.read(7)[1] == 0
    ex.link.status()
    # a new START after another command does restart it, even with the same seq
    port.write(start)
    restarted = False
    while lib.board_available(h) < 7:
        lib.board_run(h, 1, 1 << 62)
        restarted |= not board.leds()["done"]
    assert restarted and port.read(7)[1] == 0


def test_real_pyserial_over_a_pty(cfg, board):
    """The host runtime opens a pseudo-terminal with pyserial, as it would a board's USB
    serial port; the simulated board answers on the other end."""
    from boards.sim import PtyBoard
    pty = PtyBoard(board).start()
    try:
        ex = BoardExecutor(cfg, pty.path, baud=115200, slack=0.5, resync=0.05)
        assert ex.link.port.port == pty.path
        check_program(cfg, ex, 5)
        ex.link.port.close()
    finally:
        pty.stop()


def test_host_extends_narrow_counters_across_wraps(cfg):
    """32-bit counters wrap on a long run; the host adds up every poll's increase, so the
    totals it reports are the 64-bit ones."""
    from hw.isa import Counter

    assert cfg.counter_bits == 32
    rp = random_program(cfg, 1)
    # the true 64-bit count of each counter at each poll (counter c counts (c + 1) times as
    # fast, so each rises by less than 2**32 between polls); the board shows it mod 2**32
    steps = [i << 28 for i in range(41)] + [(40 << 28) + 7]

    class FakeLink:
        stats = {}

        def __init__(self):
            self.polls = 0

        def write(self, addr, data):
            pass

        def start(self, addr):
            pass

        def status(self):
            true = steps[min(self.polls, len(steps) - 1)]
            self.polls += 1
            done = self.polls >= len(steps)
            return {"running": not done, "done": done, "error": None,
                    **{c.name.lower(): (true * (c.value + 1)) % (1 << 32) for c in Counter}}

        def read(self, addr, n):
            return bytes(n)

    ex = object.__new__(BoardExecutor)       # no port: the link is the fake above
    ex.config, ex.link, ex.timeout, ex._checked = cfg, FakeLink(), 5.0, True
    _, stats = ex.run(rp.program, rp.memory)
    for c in Counter:
        assert stats[c.name.lower()] == steps[-1] * (c.value + 1), c.name


def test_link_resets_the_accelerator_from_a_flop():
    """The accelerator's reset (``Link.acc_rst``) is high through the board's reset (one
    edge late), then low; a START frame raises it for exactly the cycle before the
    start pulse. Above the low-clock threshold it is the accelerator's only reset, so the
    board's reset must reach the accelerator through it."""
    from amaranth import Signal
    from amaranth.hdl import ResetInserter
    from amaranth.sim import Simulator
    from boards.link import Link as LinkRTL
    from hw.config import AccelConfig

    cfg = AccelConfig(rows=4, cols=4, bus_bytes=4, dram_bytes=4096, mem_bytes_per_cycle=4)
    dut = LinkRTL(cfg, clock_hz=1_000_000, idle_cycles=1000, addr_bits=10)
    board_rst = Signal()
    trace = []

    async def bench(ctx):
        ctx.set(board_rst, 1)
        for _ in range(3):
            await ctx.tick()
            trace.append(("reset", ctx.get(dut.acc_rst)))
        ctx.set(board_rst, 0)
        await ctx.tick()
        trace.append(("after", ctx.get(dut.acc_rst)))
        await ctx.tick()
        trace.append(("idle", ctx.get(dut.acc_rst)))
        ctx.set(dut.tx.ready, 1)
        for b in encode(SOF_REQ, Cmd.START, 1, struct.pack("<I", 0x40)):
            ctx.set(dut.rx.payload, b)
            ctx.set(dut.rx.valid, 1)
            await ctx.tick()
            ctx.set(dut.rx.valid, 0)
            await ctx.tick()
        for _ in range(50):
            trace.append(("run", ctx.get(dut.acc_rst), ctx.get(dut.start)))
            await ctx.tick()

    sim = Simulator(ResetInserter({"sync": board_rst})(dut))
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert trace[:5] == [("reset", 1)] * 3 + [("after", 0), ("idle", 0)], trace[:5]
    run = [t[1:] for t in trace[5:]]
    rst_at = [i for i, (r, _) in enumerate(run) if r]
    start_at = [i for i, (_, s) in enumerate(run) if s]
    assert len(rst_at) == 1 and start_at == [rst_at[0] + 1], run
