"""The board side of the UART host link: parses request frames, checks their CRC, executes
them against the board memory and the accelerator, and sends the reply frame.

The protocol is defined in boards/protocol.py. A request is buffered whole (payload in a
small block RAM) and executed only once its CRC checks. A frame that stops arriving
mid-way is dropped after ``idle_cycles`` without a byte; an over-long one is discarded up to
the next idle gap and answered with BAD_LEN.
"""

from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import crc, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.isa import ErrorCode
from hw.config import span_bits
from hw.lib import take
from .memory import link_mem_signature
from .protocol import (CRC, HEADER_BYTES, MAX_PAYLOAD, SOF_REP, SOF_REQ, Cmd, Status,
                       info_bytes, status_bytes)

__all__ = ["Link"]


class Link(wiring.Component):
    """Ports: ``rx``/``tx`` byte streams (from/to the UART), ``mem`` (board memory port),
    accelerator control (``acc_rst``, ``start``, ``prog_addr``), status inputs and the
    counter read port (``csr_addr``/``csr_data``)."""

    def __init__(self, config, *, clock_hz, idle_cycles, addr_bits):
        self.config = config
        self._clock_hz, self._idle = clock_hz, idle_cycles
        super().__init__({
            "rx": In(stream.Signature(8, always_ready=True)),
            "tx": Out(stream.Signature(8)),
            "mem": Out(link_mem_signature(config.bus_bytes, addr_bits)),
            "acc_rst": Out(1, init=1), "start": Out(1), "prog_addr": Out(32),
            "running": In(1), "done": In(1), "error": In(1), "error_code": In(ErrorCode),
            "csr_addr": Out(4), "csr_data": In(64),
        })

    def elaborate(self, platform):
        m = Module()
        x = self._setup(m, platform)
        self._request_verdict(m, x, platform)
        self._frame_fsm(m, x, platform)
        return m

    def _setup(self, m, platform):
        """The units and the values every concern below shares."""
        cfg = self.config
        bb = cfg.bus_bytes
        shift = (bb - 1).bit_length()
        rx, tx = self.rx, self.tx
        byte = rx.payload
        # Registers that only serve timing (the link_registers knob): without them the same
        # values are wires (`timed`), the sources they copy hold still anyway
        deep = cfg.pipelining.link_registers
        timed = m.d.sync if deep else m.d.comb

        # one CRC unit: a request's bytes, then (stop and wait) its reply's
        m.submodules.crc = crcp = crc.Processor(CRC)
        m.submodules.buf = buf = Memory(shape=8, depth=MAX_PAYLOAD, init=[])
        bw, br = buf.write_port(), buf.read_port()

        # widths: a payload (and a reply) is at most MAX_PAYLOAD bytes (a longer frame is
        # discarded as its length arrives); addresses are checked whole, then used at the
        # memory's width
        pb = span_bits(MAX_PAYLOAD)
        db = span_bits(cfg.dram_bytes)
        cmd, seq = Signal(8), Signal(8)
        length = Signal(pb)
        idx = Signal(pb)            # byte index within the current section
        p_addr = Signal(db)         # payload bytes 0..3: the bits a memory address has,
        p_high = Signal()           # ... and whether any bit above them is set
        p_count = Signal(16)        # payload bytes 4..5
        status = Signal(8)
        rep_len = Signal(pb)
        word = Signal(8 * bb)
        out_byte = Signal(8)
        sent, sent_byte, sent_first = Signal(), Signal(8), Signal()    # for the reply's CRC
        m.d.sync += [sent.eq(0), sent_first.eq(0)]
        # the accelerator's reset: a flop, high in the RESET state and through the link's
        # own reset, so the accelerator's reset net can be that flop and nothing else (it
        # fans out to every register of the accelerator, see BoardCore)
        m.d.sync += self.acc_rst.eq(0)
        last_seq = Signal(8)
        started = Signal()          # the last command executed was START with last_seq
        idle = Signal(range(self._idle + 1))

        expired = Signal()          # idle == self._idle, as a flop of its own
        with m.If(rx.valid):
            m.d.sync += [idle.eq(0), expired.eq(0)]
        with m.Elif(~expired):
            m.d.sync += [idle.eq(idle + 1), expired.eq(idle == self._idle - 1)]
        timed_out = ~rx.valid & expired

        m.d.comb += [crcp.data.eq(byte),
                     bw.addr.eq(idx), bw.data.eq(byte)]

        data_bytes = (length - 4)[:pb]
        # registered: the fields settle with the payload's last byte, and the verdict is read
        # in CHECK, after the two CRC bytes (many cycles later); the adder and comparison
        # stay off the paths into the FSM
        # (in two steps: the span's length, then the sum and comparison)
        in_range, aligned = Signal(), Signal()
        span = Signal(16)
        timed += span.eq(Mux(cmd == Cmd.READ, p_count, data_bytes))
        m.d.sync += [
            in_range.eq(~p_high & ((p_addr + span) <= cfg.dram_bytes)),
            aligned.eq((p_addr[:shift] == 0) & (data_bytes[:shift] == 0) if shift else 1)]

        # the INFO reply: a small ROM (a block RAM's read port, addressed from idx, which
        # holds still from R_FETCH to R_LATCH)
        info = info_bytes(cfg, self._clock_hz)
        m.submodules.info_rom = rom = Memory(shape=8, depth=len(info), init=list(info))
        info_rp = rom.read_port()
        m.d.comb += info_rp.addr.eq(idx)
        # reply payload byte `idx`, valid two cycles after R_FETCH drove the addresses
        rd_addr = (p_addr + idx)[:db]
        req_addr = Signal(db)       # (deep) the word's address, registered in R_FETCH
        csr_addr = Signal(4)        # registered in R_FETCH: no adder before the counters' mux
        m.d.comb += self.csr_addr.eq(csr_addr)
        # a counter's bytes leave one by one, thousands of cycles apart: all of them come
        # from the value read with its first byte, or a running counter would tear
        cb = cfg.counter_bits
        snap = Signal(cb)
        # what selects the byte, registered in R_FETCH (idx holds still until R_LATCH): no
        # adder or comparator before the byte multiplexers
        k, first_byte, is0, is1 = Signal(3), Signal(), Signal(), Signal()
        lane = Signal(max(shift, 1))
        # the sources of a reply byte, captured in R_LATCH and chosen from in R_SELECT: no
        # path from a block RAM's output or the counters' multiplexer to the byte's
        csr_q, rd_q, info_q = Signal(cb), Signal(8 * bb), Signal(8)
        captured = [rd_q.eq(self.mem.rdata), csr_q.eq(self.csr_data[:cb]),
                    info_q.eq(info_rp.data)]
        if not deep:
            m.d.comb += captured
        counter = Mux(first_byte, csr_q, snap)
        stat_byte = Mux(is0, Cat(self.running, self.done, self.error),
                        Mux(is1, self.error_code.as_value(),
                            Cat(counter, Const(0, 64 - cb)).word_select(k, 8)))
        prog_addr = Signal(db + 1)      # a START beyond memory keeps a high bit: FETCH_RANGE
        m.d.comb += self.prog_addr.eq(prog_addr)

        def send_reply(st, n):
            m.d.sync += [status.eq(st), rep_len.eq(n), idx.eq(0)]
            m.next = "R_PREP"

        def reply(st, n=0):
            send_reply(st, n if st == Status.OK else 0)     # (only OK carries a payload)

        return SimpleNamespace(aligned=aligned, bb=bb, br=br, bw=bw, byte=byte,
                               captured=captured, cmd=cmd, crcp=crcp, csr_addr=csr_addr,
                               csr_q=csr_q, db=db, deep=deep, first_byte=first_byte,
                               idx=idx, in_range=in_range, info=info, info_q=info_q,
                               is0=is0, is1=is1, k=k, lane=lane, last_seq=last_seq,
                               length=length, out_byte=out_byte, p_addr=p_addr,
                               p_count=p_count, p_high=p_high, pb=pb, prog_addr=prog_addr,
                               rd_addr=rd_addr, rd_q=rd_q, rep_len=rep_len, reply=reply,
                               req_addr=req_addr, rx=rx, send_reply=send_reply, sent=sent,
                               sent_byte=sent_byte, sent_first=sent_first, seq=seq,
                               shift=shift, snap=snap, started=started, stat_byte=stat_byte,
                               status=status, timed=timed, timed_out=timed_out, tx=tx,
                               word=word)

    def _request_verdict(self, m, x, platform):
        """The request's verdict, decided while its CRC bytes arrive."""
        (aligned, cmd, crcp, deep, idx, in_range, info, last_seq, length, p_count, pb, rep_len,
         seq, started, timed) = \
            take(x, "aligned cmd crcp deep idx in_range info last_seq length p_count pb rep_len "
                     "seq started timed")
        # The request's verdict, registered every cycle from registers that hold still from
        # the payload's end through the CRC bytes (`running` is a cycle old: a run can only
        # end meanwhile): CHECK acts on it, with the CRC's match, and decodes nothing.
        V_REPLY, V_START, V_WRITE, V_READ = range(4)
        v_act, v_status, v_len = Signal(2), Signal(8), Signal(pb)

        def verdict(act, st=Status.OK, n=0):
            nonlocal timed
            timed += [v_act.eq(act), v_status.eq(st), v_len.eq(n if st == Status.OK else 0)]
        with m.Switch(cmd):
            with m.Case(Cmd.INFO):
                with m.If(length != 0):
                    verdict(V_REPLY, Status.BAD_LEN)
                with m.Else():
                    verdict(V_REPLY, Status.OK, len(info))
            with m.Case(Cmd.STATUS):
                with m.If(length != 0):
                    verdict(V_REPLY, Status.BAD_LEN)
                with m.Else():
                    verdict(V_REPLY, Status.OK, status_bytes())
            with m.Case(Cmd.START):
                with m.If(length != 4):
                    verdict(V_REPLY, Status.BAD_LEN)
                with m.Elif(started & (seq == last_seq)):
                    verdict(V_REPLY, Status.OK)         # a retry: already started
                with m.Else():
                    verdict(V_START)
            with m.Case(Cmd.WRITE):
                with m.If((length <= 4)):
                    verdict(V_REPLY, Status.BAD_LEN)
                with m.Elif(~aligned | ~in_range):
                    verdict(V_REPLY, Status.BAD_ADDR)
                with m.Elif(self.running):
                    verdict(V_REPLY, Status.BUSY)
                with m.Else():
                    verdict(V_WRITE)
            with m.Case(Cmd.READ):
                with m.If(length != 6):
                    verdict(V_REPLY, Status.BAD_LEN)
                with m.Elif((p_count == 0) | (p_count > MAX_PAYLOAD) | ~in_range):
                    verdict(V_REPLY, Status.BAD_ADDR)
                with m.Elif(self.running):
                    verdict(V_REPLY, Status.BUSY)
                with m.Else():
                    verdict(V_READ)
            with m.Default():
                verdict(V_REPLY, Status.BAD_CMD)
        # idx's next value against the lengths, registered: idx moves once a byte at most
        # (a received one, or a sent one five states apart), so the flags are a cycle old
        # only when nobody reads them
        at_length, at_out = Signal(), Signal()
        timed += [at_length.eq(idx + 1 == length), at_out.eq(idx + 1 == rep_len)]
        # the length's verdict in LEN, from its whole high byte (`length` keeps pb bits)
        len_hi = Signal(8)
        full_length = Cat(length[:8], len_hi)
        # what R_SELECT picks a byte from (cmd holds still from the header on)
        is_read, is_status = Signal(), Signal()
        timed += [is_read.eq(cmd == Cmd.READ), is_status.eq(cmd == Cmd.STATUS)]

        crc_ok = crcp.match_detected
        if deep:
            crc_ok = Signal()
            m.d.sync += crc_ok.eq(crcp.match_detected)

        vars(x).update(V_READ=V_READ, V_REPLY=V_REPLY, V_START=V_START, V_WRITE=V_WRITE,
                       at_length=at_length, at_out=at_out, crc_ok=crc_ok,
                       full_length=full_length, is_read=is_read, is_status=is_status,
                       len_hi=len_hi, v_act=v_act, v_len=v_len, v_status=v_status)

    def _frame_fsm(self, m, x, platform):
        """The link's state machine: a request in, its action, the reply out."""
        crcp, deep, sent, sent_byte, sent_first = take(x, "crcp deep sent sent_byte sent_first")
        with m.FSM() as fsm:
            self._receive_states(m, x)
            self._write_states(m, x)
            self._reply_states(m, x)
        # one-hot: a state test is one flop, not a decode of a 5-bit code (Yosys leaves a
        # register with an initial value alone unless told its encoding). Yosys then warns
        # that the initial value is ignored: the board's reset, held until the PLL locks
        # (boards/top.py), puts the FSM in HUNT.
        if deep:
            fsm.state.attrs["fsm_encoding"] = "one-hot"
        with m.If(sent):        # (the states after a sent byte take nothing from rx)
            m.d.comb += [crcp.data.eq(sent_byte), crcp.valid.eq(1), crcp.start.eq(sent_first)]

    def _receive_states(self, m, x):
        """The request frame: header, length, payload and CRC, then its verdict acted on."""
        (V_READ, V_REPLY, V_START, V_WRITE, at_length, bw, byte, cmd, crc_ok, crcp, db, deep,
         full_length, idx, last_seq, len_hi, length, p_addr, p_count, p_high, prog_addr, reply,
         rx, send_reply, seq, started, timed_out, v_act, v_len, v_status) = \
            take(x, "V_READ V_REPLY V_START V_WRITE at_length bw byte cmd crc_ok crcp db deep "
                     "full_length idx last_seq len_hi length p_addr p_count p_high prog_addr "
                     "reply rx send_reply seq started timed_out v_act v_len v_status")
        with m.State("HUNT"):
            m.d.comb += [crcp.start.eq(1), crcp.valid.eq(rx.valid & (byte == SOF_REQ))]
            m.d.sync += self.mem.busy.eq(0)
            with m.If(rx.valid & (byte == SOF_REQ)):
                m.d.sync += [idx.eq(0), p_high.eq(0)]
                m.next = "HEAD"
        with m.State("HEAD"):
            m.d.comb += crcp.valid.eq(rx.valid)
            with m.If(rx.valid):
                m.d.sync += idx.eq(idx + 1)
                with m.Switch(idx):
                    with m.Case(0):
                        m.d.sync += cmd.eq(byte)
                    with m.Case(1):
                        m.d.sync += seq.eq(byte)
                    with m.Case(2):
                        m.d.sync += length[:8].eq(byte)
                    with m.Case(3):
                        m.d.sync += [length[8:].eq(byte), len_hi.eq(byte), idx.eq(0)]
                        m.next = "LEN"
            with m.Elif(timed_out):
                m.next = "HUNT"
        with m.State("LEN"):                # the length from its register (a byte's
            with m.If(full_length > MAX_PAYLOAD):   # time before the payload's
                m.next = "DISCARD"                      # first byte)
            with m.Elif(full_length == 0):
                m.next = "TRAIL"
            with m.Else():
                m.next = "PAY"
        with m.State("PAY"):
            m.d.comb += [crcp.valid.eq(rx.valid), bw.en.eq(rx.valid)]
            with m.If(rx.valid):
                with m.If(idx < 4):
                    with m.Switch(idx[:2]):     # little-endian, byte by byte
                        for i in range(4):
                            keep = max(0, min(8, db - 8 * i))
                            with m.Case(i):
                                if keep:
                                    m.d.sync += p_addr[8 * i:8 * i + keep].eq(byte[:keep])
                                if keep < 8:
                                    with m.If(byte[keep:] != 0):
                                        m.d.sync += p_high.eq(1)
                with m.Elif(idx < 6):
                    m.d.sync += p_count.eq(Cat(p_count[8:], byte))
                m.d.sync += idx.eq(idx + 1)
                with m.If(at_length):
                    m.d.sync += idx.eq(0)
                    m.next = "TRAIL"
            with m.Elif(timed_out):
                m.next = "HUNT"
        with m.State("TRAIL"):
            m.d.comb += crcp.valid.eq(rx.valid)
            with m.If(rx.valid):
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx == 1):
                    m.next = "CRC_REG" if deep else "CHECK"
            with m.Elif(timed_out):
                m.next = "HUNT"
        if deep:
            # the CRC's match registered (its comparator is not in front of the FSM)
            with m.State("CRC_REG"):
                m.next = "CHECK"
        with m.State("DISCARD"):
            with m.If(timed_out):
                reply(Status.BAD_LEN)
        with m.State("CHECK"):
            with m.If(~crc_ok):
                reply(Status.BAD_CRC)
            with m.Else():
                # only a START repeated back to back (a retry) is recognised as one
                m.d.sync += started.eq(0)
                with m.Switch(v_act):
                    with m.Case(V_REPLY):
                        send_reply(v_status, v_len)
                    with m.Case(V_START):
                        m.d.sync += [prog_addr.eq(Cat(p_addr, p_high)),
                                     last_seq.eq(seq),
                                     started.eq(1)]
                        m.next = "RESET"
                        m.d.sync += self.acc_rst.eq(1)
                    with m.Case(V_WRITE):
                        m.d.sync += [idx.eq(4), self.mem.busy.eq(1)]
                        m.next = "W_READ"
                    with m.Case(V_READ):
                        m.d.sync += self.mem.busy.eq(1)
                        send_reply(Status.OK, p_count)
        with m.State("RESET"):
            m.next = "GO"
        with m.State("GO"):
            m.d.comb += self.start.eq(1)
            reply(Status.OK)


    def _write_states(self, m, x):
        """WRITE: the buffered payload into memory words (little-endian)."""
        (bb, br, idx, length, p_addr, reply, shift, word) = \
            take(x, "bb br idx length p_addr reply shift word")
        with m.State("W_READ"):
            m.d.comb += [br.addr.eq(idx), br.en.eq(1)]
            m.next = "W_SHIFT"
        with m.State("W_SHIFT"):
            m.d.sync += [word.eq(Cat(word[8:], br.data)), idx.eq(idx + 1)]
            with m.If(((idx - 4) & (bb - 1)) == bb - 1):
                m.next = "W_WRITE"
            with m.Else():
                m.next = "W_READ"
        with m.State("W_WRITE"):
            # the address from a register (the payload's, a word on per write): no
            # adder in front of the memory's address pins
            m.d.comb += [self.mem.en.eq(1), self.mem.we.eq(1), self.mem.wdata.eq(word),
                         self.mem.addr.eq(p_addr >> shift)]
            m.d.sync += p_addr.eq(p_addr + bb)
            with m.If(idx == length):
                reply(Status.OK)
            with m.Else():
                m.next = "W_READ"


    def _reply_states(self, m, x):
        """The reply frame: header, payload bytes (memory, counters, INFO), CRC."""
        (at_out, captured, crcp, csr_addr, csr_q, deep, first_byte, idx, info_q, is0, is1,
         is_read, is_status, k, lane, out_byte, rd_addr, rd_q, rep_len, req_addr, sent,
         sent_byte, sent_first, seq, shift, snap, stat_byte, status, timed, tx) = \
            take(x, "at_out captured crcp csr_addr csr_q deep first_byte idx info_q is0 is1 "
                     "is_read is_status k lane out_byte rd_addr rd_q rep_len req_addr sent "
                     "sent_byte sent_first seq shift snap stat_byte status timed tx")
        # The reply's CRC takes each byte the cycle after the transmitter does, from
        # registers (no path from the byte's multiplexers through the CRC's XORs)
        n_out = rep_len
        head = Array([Const(SOF_REP, 8), status, seq, n_out[:8], n_out[8:]])
        # the header's byte, registered from idx (it moves when a byte is sent, and the
        # transmitter then stays busy a byte's time); R_PREP lets it settle first
        hdr_byte = Signal(8)
        timed += hdr_byte.eq(head[idx[:3]])
        with m.State("R_PREP"):
            m.next = "R_HDR"
        with m.State("R_HDR"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(hdr_byte)]
            with m.If(tx.ready):
                m.d.sync += [sent.eq(1), sent_byte.eq(hdr_byte), sent_first.eq(idx == 0)]
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx == HEADER_BYTES - 1):
                    m.d.sync += idx.eq(0)
                    with m.If(n_out == 0):
                        m.next = "R_CRCWAIT"
                    with m.Else():
                        m.next = "R_FETCH"
        with m.State("R_FETCH"):
            # (`busy` is up for a READ alone: no decode of the command here)
            if deep:
                # the word's address registered first (no adder in front of the board
                # memory's address registers)
                m.d.sync += req_addr.eq(rd_addr >> shift)
            else:
                m.d.comb += [self.mem.en.eq(self.mem.busy),
                             self.mem.addr.eq(rd_addr >> shift)]
            kk = (idx - 2)[:3]
            m.d.sync += [k.eq(kk), first_byte.eq((idx >= 2) & (kk == 0)), is0.eq(idx == 0),
                         is1.eq(idx == 1), lane.eq(rd_addr[:shift] if shift else 0),
                         csr_addr.eq((idx - 2) >> 3)]
            m.next = "R_REQ" if deep else "R_WAIT"
        if deep:
            with m.State("R_REQ"):
                m.d.comb += [self.mem.en.eq(self.mem.busy), self.mem.addr.eq(req_addr)]
                m.next = "R_WAIT"
        with m.State("R_WAIT"):             # the memory registers the request first
            m.next = "R_WAIT2"
        with m.State("R_WAIT2"):            # (counters in a block RAM: read a cycle late)
            m.next = "R_WAIT3" if deep else "R_LATCH"
        if deep:
            with m.State("R_WAIT3"):        # (the memory registers its data twice)
                m.next = "R_LATCH"
        with m.State("R_LATCH"):
            if deep:
                m.d.sync += captured
            m.next = "R_SELECT"
        with m.State("R_SELECT"):
            with m.If(is_read):
                m.d.sync += out_byte.eq(rd_q.word_select(lane, 8) if shift else rd_q)
            with m.Elif(is_status):
                m.d.sync += out_byte.eq(stat_byte)
                with m.If(first_byte):
                    m.d.sync += snap.eq(csr_q)
            with m.Else():
                m.d.sync += out_byte.eq(info_q)
            m.next = "R_SEND"
        with m.State("R_SEND"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(out_byte)]
            with m.If(tx.ready):
                m.d.sync += [sent.eq(1), sent_byte.eq(out_byte)]
                m.d.sync += idx.eq(idx + 1)
                with m.If(at_out):
                    m.d.sync += idx.eq(0)
                    m.next = "R_CRCWAIT"
                with m.Else():
                    m.next = "R_FETCH"
        with m.State("R_CRCWAIT"):          # the CRC register takes the last byte
            m.next = "R_CRC"
        with m.State("R_CRC"):
            m.d.comb += [tx.valid.eq(1),
                         tx.payload.eq(Mux(idx == 0, crcp.crc[8:], crcp.crc[:8]))]
            with m.If(tx.ready):
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx == 1):
                    m.next = "HUNT"
