"""What the three queue executors share: their ports and the front end of their FSM.

An executor pops one instruction (the "executing slot"), checks it (raising an error code),
waits for its dependency tokens, runs it, and gives its release tokens when it completes.
"""

from amaranth import Const, Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .isa import view, INSN_BITS, ErrorCode, Header, Opcode

__all__ = ["executor_members", "Front", "first_error", "sum_exceeds", "SlicedFifo"]


def executor_members():
    return {
        "insn": In(stream.Signature(INSN_BITS)),
        "avail": In(3),      # avail[p]: the counter (queue p -> this queue) is non-zero
        "take": Out(3),      # strobe: take one token from every queue in the mask
        "give": Out(3),      # strobe: give one token to every queue in the mask
        "error": Out(ErrorCode),
        "halt": In(1),
        "blocked": Out(1),   # empty and idle, or waiting for a token: cannot progress alone
        "busy": Out(1),
    }


def sum_exceeds(terms, bound, bits=None):
    """``sum(terms) > bound`` for unsigned ``terms``, on ``bits`` low bits of each (default:
    the bound's bit length): a term with a higher bit set is at least ``2**bits``, more
    than the bound on its own. ``bound`` may be a constant or a Value below ``2**bits``."""
    if bits is None:
        bits = max(1, int(bound).bit_length())
    high, low = Const(0, 1), Const(0, 1)
    for t in terms:
        t = Value.cast(t)
        if len(t) > bits:
            high = high | (t[bits:] != 0)
        low = low + t[:bits]
    return high | (low > bound)


def first_error(m, checks):
    """Comb ErrorCode signal: the code of the first true condition in ``checks``."""
    err = Signal(ErrorCode)
    for cond, code in reversed(checks):
        with m.If(cond):
            m.d.comb += err.eq(code)
    return err


class Front:
    """The shared FSM front end. The unit drives ``finish`` in state RUN (and may set
    ``extra_ready`` to hold WAIT), and forwards ``give`` to its port; ``start`` pulses when
    RUN is entered.

    ``checks(insn)`` lists ``(condition, ErrorCode)``; they run on the instruction as it
    enters the slot and their verdict is registered with it. A unit whose checks need
    costly arithmetic gives ``pre(insn) -> [values]``: those are registered as the
    instruction enters, ``checks(insn, pre_values)`` then runs on registers in CHECK, and
    the verdict is acted on one cycle later (CHECK2), so no path holds both the arithmetic
    and the comparison.

    ``lookahead=True`` (with ``pre``) checks the instruction while it waits at the queue's
    output instead: ``pre`` values, then each check's condition, then the verdict are
    registered from it every cycle, and it is taken only once it has sat there three cycles
    (so all three registers describe it). The verdict is ready as the instruction enters:
    no CHECK2 cycle, and no arithmetic on the path into the slot; an instruction arriving at
    an idle unit waits three cycles."""
    IDLE, CHECK, WAIT, RUN, HALT, CHECK2 = range(6)

    def __init__(self, m: Module, port, *, queue, checks, pre=None, lookahead=False,
                 onehot=False):
        self.state = state = Signal(range(6))
        if onehot:      # (with check_lookahead) a state test is one flop
            state.attrs["fsm_encoding"] = "one-hot"
        self.insn = insn = Signal(INSN_BITS)
        self.hdr = hdr = view(Header, insn)
        self.start = Signal()
        self.finish = Signal()
        self.extra_ready = Signal(init=1)
        self.pre_done = Signal(init=1)  # with ``pre``: the unit may hold CHECK until its
        #                                 (multi-cycle) pre values are ready
        self.give = Signal(3)       # the unit forwards this (or'ed with its own) to port.give
        # the slot's opcode decoded as it is loaded: is_op[op] is a flop
        self.is_op = {op: Signal(name=f"is_{op.name.lower()}") for op in Opcode}
        own = 1 << queue

        def load_slot():    # the queue's instruction enters the slot, to be checked
            m.d.sync += [insn.eq(port.insn.payload), state.eq(self.CHECK)]
            new_op = view(Header, port.insn.payload).opcode
            m.d.sync += [flag.eq(new_op == op) for op, flag in self.is_op.items()]

        def verdicts(word, *pre_values):
            h = view(Header, word)
            return ([((h.wait | h.release) & own, ErrorCode.ILLEGAL_FIELD)]
                    + list(checks(word, *pre_values)))

        def verdict(word, *pre_values):
            return first_error(m, verdicts(word, *pre_values))
        self.loading = loading = port.insn.valid & port.insn.ready
        take_ok = Const(1)
        if lookahead:
            assert pre is not None
            # stable[k]: the queue's output now is what it was k cycles ago
            stable1, stable2, stable3 = Signal(), Signal(), Signal()
            m.d.sync += [stable1.eq(port.insn.valid & ~loading),
                         stable2.eq(stable1 & port.insn.valid & ~loading),
                         stable3.eq(stable2 & port.insn.valid & ~loading)]
            take_ok = stable3
        err = Signal(ErrorCode)
        self.slot_pre = None    # with lookahead: the slot instruction's pre values
        if lookahead:
            values = pre(port.insn.payload)
            regs = [Signal(v.shape(), name=f"ahead{i}") for i, v in enumerate(values)]
            m.d.sync += [r.eq(v) for r, v in zip(regs, values)]
            # kept with the instruction while it is in the slot (the queue's output, and
            # with it the ahead registers, moves on to the next one)
            self.slot_pre = [Signal(v.shape(), name=f"slot_pre{i}") for i, v in enumerate(values)]
            with m.If(loading):
                m.d.sync += [s.eq(r) for s, r in zip(self.slot_pre, regs)]
            # each check's condition is registered, then the first true one's code
            conds = verdicts(port.insn.payload, regs)
            held = [Signal(name=f"ahead_c{i}") for i in range(len(conds))]
            m.d.sync += [h.eq(Value.cast(c).bool()) for h, (c, _) in zip(held, conds)]
            ahead = Signal(ErrorCode)
            m.d.sync += ahead.eq(first_error(m, [(h, c) for h, (_, c) in zip(held, conds)]))
            with m.If(loading):
                m.d.sync += err.eq(ahead)
            decide = self.CHECK
        elif pre is None:
            err_next = verdict(port.insn.payload)
            with m.If(loading):
                m.d.sync += err.eq(err_next)
            decide = self.CHECK
        else:
            values = pre(port.insn.payload)
            regs = [Signal(v.shape(), name=f"pre{i}") for i, v in enumerate(values)]
            with m.If(loading):
                m.d.sync += [r.eq(v) for r, v in zip(regs, values)]
            err_next = verdict(insn, regs)
            with m.If((state == self.CHECK) & self.pre_done):
                m.d.sync += [err.eq(err_next), state.eq(self.CHECK2)]
            decide = self.CHECK2
        tokens_ok = (hdr.wait & ~port.avail) == 0
        with m.Switch(state):
            with m.Case(self.IDLE):
                m.d.comb += port.insn.ready.eq(take_ok)
                with m.If(port.insn.valid & take_ok):
                    load_slot()
            with m.Case(decide):
                m.d.comb += port.error.eq(err)
                with m.If(err != ErrorCode.NONE):
                    m.d.sync += state.eq(self.HALT)
                with m.Elif(tokens_ok & self.extra_ready):      # no WAIT cycle if ready
                    m.d.comb += [port.take.eq(hdr.wait), self.start.eq(1)]
                    m.d.sync += state.eq(self.RUN)
                with m.Else():
                    m.d.sync += state.eq(self.WAIT)
            with m.Case(self.WAIT):
                with m.If(tokens_ok & self.extra_ready):
                    m.d.comb += [port.take.eq(hdr.wait), self.start.eq(1)]
                    m.d.sync += state.eq(self.RUN)
            with m.Case(self.RUN):
                with m.If(self.finish):
                    m.d.comb += [self.give.eq(hdr.release), port.insn.ready.eq(take_ok)]
                    m.d.sync += state.eq(self.IDLE)
                    with m.If(port.insn.valid & take_ok):   # the next one, without IDLE
                        load_slot()
        with m.If(port.halt):
            m.d.sync += state.eq(self.HALT)
        self.blocked = (((state == self.IDLE) & ~port.insn.valid)
                        | ((state == self.WAIT) & ~tokens_ok))
        self.busy = (state != self.IDLE) & (state != self.HALT)
        if not getattr(port, "owns_status", False):
            m.d.comb += [port.blocked.eq(self.blocked), port.busy.eq(self.busy)]


class SlicedFifo(wiring.Component):
    """A queue (of instructions, or of a DMA's jobs) of ``depth`` entries: ``w`` in, ``r``
    out, ``empty`` when it holds nothing. With ``sliced`` (the ``queue_slices`` knob) and a
    depth of 2 or more, its last two entries are a register slice (``StreamSlice``): the
    executor's ``ready`` reaches two flops' enables and nothing of the FIFO's counters; the
    FIFO before it is two shorter, so the queue holds exactly ``depth`` (the golden model's
    capacity)."""

    def __init__(self, depth, *, sliced, width=INSN_BITS):
        self._depth, self._width = depth, width
        self._sliced = sliced and depth >= 2
        super().__init__({"w": In(stream.Signature(width)), "r": Out(stream.Signature(width)),
                          "empty": Out(1)})

    def elaborate(self, platform):
        from .bus import StreamSlice
        m = Module()
        if not self._sliced:
            m.submodules.fifo = fifo = SyncFIFOBuffered(width=self._width, depth=self._depth)
            m.d.comb += [fifo.w_data.eq(self.w.payload), fifo.w_en.eq(self.w.valid),
                         self.w.ready.eq(fifo.w_rdy),
                         self.r.payload.eq(fifo.r_data), self.r.valid.eq(fifo.r_rdy),
                         fifo.r_en.eq(self.r.ready), self.empty.eq(~fifo.r_rdy)]
            return m
        m.submodules.slice = sl = StreamSlice(self._width)
        wiring.connect(m, sl.o, wiring.flipped(self.r))
        if self._depth == 2:
            wiring.connect(m, wiring.flipped(self.w), sl.i)
            m.d.comb += self.empty.eq(~sl.o.valid)
            return m
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self._width, depth=self._depth - 2)
        m.d.comb += [fifo.w_data.eq(self.w.payload), fifo.w_en.eq(self.w.valid),
                     self.w.ready.eq(fifo.w_rdy),
                     sl.i.payload.eq(fifo.r_data), sl.i.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(sl.i.ready),
                     self.empty.eq(~fifo.r_rdy & ~sl.o.valid)]
        return m
