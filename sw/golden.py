"""Bit-exact golden model: interprets a program instruction by instruction in numpy.

The three queues are modelled with their real depth (``queue_depth`` waiting + 1 executing)
and the dependency tokens exactly as the hardware keeps them, so a program that deadlocks the
hardware deadlocks here too. Integer results, final memory, error codes and the
instruction/MAC/byte counters match the RTL exactly; cycle counts are the RTL's business.
"""

from __future__ import annotations

import numpy as np

from hw.config import AccelConfig
from hw.engines import mode_view, spec
from hw.position import relocate_fields
from hw.isa import (INSN_BYTES, QUEUE_OF, Buffer, Engine, ErrorCode, IsaError, Opcode, Queue,
                    SfuFunc, buffer_depth, buffer_entry_bytes, built_opcodes, decode)
from . import engines, sfu
from .executor import check_pos, place_program
from .program import MemoryImage, Program

__all__ = ["Machine", "rne_shift", "requant", "wrap32", "check_insn", "TOKEN_MAX"]

TOKEN_MAX = 255     # dependency-token counters are 8 bits wide


def rne_shift(x, shift):
    """``x / 2**shift`` rounded half to even, exactly, for int64 arrays."""
    x = np.asarray(x, np.int64)
    if shift == 0:
        return x
    q = x >> shift
    r = x & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    return q + ((r > half) | ((r == half) & ((q & 1) == 1)))


def requant(acc, mult, shift, residual=None, relu=False):
    """The requant/vector op on int32 ``acc`` [n, rows] with int16 ``mult`` [n]."""
    q = rne_shift(acc.astype(np.int64) * mult.astype(np.int64)[:, None], shift)
    if residual is not None:
        q = q + residual.astype(np.int64)
    return np.clip(q, 0 if relu else -128, 127).astype(np.int8)


_LOADABLE = (Buffer.ACT, Buffer.WGT, Buffer.SCALE)
_STORABLE = (Buffer.ACT, Buffer.ACC)


def check_insn(cfg: AccelConfig, d: dict, queue: Queue):
    """The error an instruction raises when it reaches the head of ``queue``, or None.

    Checks run in this priority order, which the hardware follows too: ILLEGAL_FIELD,
    SP_RANGE, MISALIGNED, DRAM_RANGE, OVERLAP.
    """
    op = d["opcode"]
    own = 1 << queue.value
    if (d["wait"] | d["release"]) & own:
        return ErrorCode.ILLEGAL_FIELD
    if op in (Opcode.LOAD, Opcode.STORE):
        buf = d["buf"]
        if buf not in (_LOADABLE if op == Opcode.LOAD else _STORABLE) or d["rows"] == 0:
            return ErrorCode.ILLEGAL_FIELD
        if d["sp_addr"] + d["rows"] > buffer_depth(cfg)[buf]:
            return ErrorCode.SP_RANGE
        if d["dram_addr"] % cfg.bus_bytes or d["stride"] % cfg.bus_bytes:
            return ErrorCode.MISALIGNED
        last = d["dram_addr"] + (d["rows"] - 1) * d["stride"] + buffer_entry_bytes(cfg)[buf]
        if last > cfg.dram_bytes:
            return ErrorCode.DRAM_RANGE
    elif op == Opcode.MATMUL:
        eng, k = d["engine"], d["k"]
        if not isinstance(eng, Engine) or eng.name.lower() not in cfg.engines or k == 0:
            return ErrorCode.ILLEGAL_FIELD
        if d["scaled"] and not cfg.group_scale:
            return ErrorCode.ILLEGAL_FIELD
        es, mode = spec(eng), mode_view(eng, d["mode"])
        if mode is None or es.illegal(cfg, k, mode):
            return ErrorCode.ILLEGAL_FIELD
        ch = es.channels(cfg)
        if (d["act_addr"] + k > cfg.act_depth
                or d["wgt_addr"] + es.steps(cfg, k, mode) > cfg.wgt_depth
                or d["acc_addr"] + ch > cfg.acc_depth
                or (d["scaled"] and d["scale_addr"] + ch > cfg.scale_depth * cfg.scale_lanes)):
            return ErrorCode.SP_RANGE
        if es.misaligned(d["act_addr"]):
            return ErrorCode.MISALIGNED
    elif op == Opcode.REQUANT:
        n = d["count"]
        if n == 0:
            return ErrorCode.ILLEGAL_FIELD
        if (d["acc_addr"] + n > cfg.acc_depth or d["out_addr"] + n > cfg.act_depth
                or (d["residual"] and d["res_addr"] + n > cfg.act_depth)
                or d["scale_addr"] + n > cfg.scale_depth * cfg.scale_lanes):
            return ErrorCode.SP_RANGE
        if d["residual"] and _partly_overlap(d["out_addr"], d["res_addr"], n):
            return ErrorCode.OVERLAP
    elif op == Opcode.SFU:
        return _check_sfu(cfg, d)
    return None


def _partly_overlap(a, b, n):
    """Ranges [a, a + n) and [b, b + n) neither equal nor disjoint."""
    return a != b and a < b + n and b < a + n


def _check_sfu(cfg, d):
    func, n = d["func"], d["count"]
    if not isinstance(func, SfuFunc) or sfu.items(func, n, cfg.rows) is None:
        return ErrorCode.ILLEGAL_FIELD
    src, src2, writes = sfu.uses(func)
    depth = {"act": cfg.act_depth, "acc": cfg.acc_depth,
             "scale": cfg.scale_depth * cfg.scale_lanes}
    if (d["src"] + n > depth[src] or (src2 and d["src2"] + n > depth[src2])
            or (writes and d["dst"] + n > cfg.act_depth)):
        return ErrorCode.SP_RANGE
    if writes and ((src == "act" and _partly_overlap(d["dst"], d["src"], n))
                   or (src2 == "act" and _partly_overlap(d["dst"], d["src2"], n))):
        return ErrorCode.OVERLAP
    return None


class _Stop(Exception):
    def __init__(self, code):
        self.code = code


class Machine:
    """Golden-model executor for one configuration.

    Members
    -------
    act, wgt, acc, scale : numpy arrays
        The scratchpads after the last run (int8 [act_depth, rows], int8 [wgt_depth, cols],
        int32 [acc_depth, rows], int16 [scale_depth, lanes]).
    executed : list of (Queue, dict)
        The instructions of the last run in the order they executed (decoded).
    """

    name = "golden"

    def __init__(self, config: AccelConfig):
        self.config = config
        self._opcodes = built_opcodes(config)
        self.dram = None

    def run(self, program: Program, memory: MemoryImage, *, pos=0):
        cfg = self.config
        dram, prog_addr = place_program(cfg, program, memory)
        error = self.run_at(dram, prog_addr, pos)
        out = MemoryImage(bytearray(dram[:memory.size].tobytes()), dict(memory.symbols))
        return out, self.stats(error)

    def run_at(self, dram, prog_addr, pos=0):
        """Run the program at ``prog_addr`` of ``dram`` (a uint8 array of the configuration's
        external memory, changed in place) from reset, at position ``pos``. Returns the
        error's name or None; the counters are in ``stats``."""
        cfg = self.config
        self.dram = dram
        self.pos = check_pos(cfg, pos)
        self.act = np.zeros((cfg.act_depth, cfg.rows), np.int8)
        self.wgt = np.zeros((cfg.wgt_depth, cfg.cols), np.int8)
        self.acc = np.zeros((cfg.acc_depth, cfg.rows), np.int32)
        self.scale = np.zeros((cfg.scale_depth, cfg.scale_lanes), np.int16)
        self.table = np.zeros(sfu.TABLE_SIZE, np.int8)
        # the softmax passes' per-lane maximum and sum (the unit's registers, 0 from reset)
        self.sm_max = np.zeros(cfg.rows, np.int64)
        self.sm_sum = np.zeros(cfg.rows, np.int64)
        self.counters = dict(insns=0, macs=0, bytes_read=0, bytes_written=0)
        self.executed = []
        try:
            self._schedule(prog_addr)
        except _Stop as e:
            return e.code.name
        return None

    # --- session primitives (sw.executor.Session) --------------------------------------------
    def mem_write(self, addr, data: bytes):
        if self.dram is None:
            self.dram = np.zeros(self.config.dram_bytes, np.uint8)
        self.dram[addr:addr + len(data)] = np.frombuffer(data, np.uint8)

    def mem_read(self, addr, n) -> bytes:
        return self.dram[addr:addr + n].tobytes()

    def execute(self, prog_addr, pos=0) -> dict:
        return self.stats(self.run_at(self.dram, prog_addr, pos))

    def stats(self, error=None):
        return dict(self.counters, error=error, executor=self.name)

    # --- queues and tokens -----------------------------------------------------------------
    def _schedule(self, prog_addr):
        cfg = self.config
        cap = cfg.queue_depth + 1              # waiting entries + the executing slot
        queues = {q: [] for q in Queue}
        tokens = {(p, q): 0 for p in Queue for q in Queue if p != q}
        pc = prog_addr
        ended = False
        while True:
            progress = False
            while not ended:                   # fetch and dispatch in program order
                if pc + INSN_BYTES > cfg.dram_bytes:
                    raise _Stop(ErrorCode.FETCH_RANGE)
                word = int.from_bytes(self.dram[pc:pc + INSN_BYTES].tobytes(), "little")
                try:
                    d = decode(word)
                except IsaError:
                    raise _Stop(ErrorCode.ILLEGAL_OPCODE) from None
                if d["opcode"] not in self._opcodes:
                    raise _Stop(ErrorCode.ILLEGAL_OPCODE)
                if d["opcode"] == Opcode.END:
                    ended = True
                    pc += INSN_BYTES
                    break
                q = d["queue"] if d["opcode"] == Opcode.SYNC else QUEUE_OF[d["opcode"]]
                if not isinstance(q, Queue):
                    raise _Stop(ErrorCode.ILLEGAL_FIELD)
                if len(queues[q]) >= cap:
                    break
                if cfg.sfu:
                    d = relocate_fields(d, self.pos, cfg.rows)
                queues[q].append(d)
                pc += INSN_BYTES
                self.counters["insns"] += 1
                progress = True
            for q in Queue:
                while queues[q]:
                    d = queues[q][0]
                    err = check_insn(cfg, d, q)
                    if err is not None:
                        raise _Stop(err)
                    waits = [p for p in Queue if d["wait"] >> p.value & 1]
                    if any(tokens[(p, q)] == 0 for p in waits):
                        break
                    for p in waits:
                        tokens[(p, q)] -= 1
                    self.executed.append((q, d))
                    self._execute(d)
                    for p in Queue:
                        if d["release"] >> p.value & 1:
                            if tokens[(q, p)] == TOKEN_MAX:
                                raise _Stop(ErrorCode.TOKEN_OVERFLOW)
                            tokens[(q, p)] += 1
                    queues[q].pop(0)
                    progress = True
            if ended and not any(queues.values()):
                return
            if not progress:
                raise _Stop(ErrorCode.DEADLOCK)

    # --- instructions -----------------------------------------------------------------------
    def _sp(self, buf):
        return {Buffer.ACT: self.act, Buffer.WGT: self.wgt, Buffer.ACC: self.acc,
                Buffer.SCALE: self.scale}[buf]

    def _execute(self, d):
        cfg = self.config
        op = d["opcode"]
        if op in (Opcode.LOAD, Opcode.STORE):
            buf, rows = d["buf"], d["rows"]
            sp = self._sp(buf)
            eb = buffer_entry_bytes(cfg)[buf]
            idx = d["dram_addr"] + d["stride"] * np.arange(rows)[:, None] + np.arange(eb)
            if op == Opcode.LOAD:
                sp[d["sp_addr"]:d["sp_addr"] + rows] = self.dram[idx].view(sp.dtype)
                self.counters["bytes_read"] += rows * eb
            else:
                self.dram[idx] = sp[d["sp_addr"]:d["sp_addr"] + rows].view(np.uint8)
                self.counters["bytes_written"] += rows * eb
        elif op == Opcode.MATMUL:
            k, eng = d["k"], d["engine"]
            es, mode = spec(eng), mode_view(eng, d["mode"])
            ch = es.channels(cfg)
            a = self.act[d["act_addr"]:d["act_addr"] + k]                    # [k, rows]
            w = self.wgt[d["wgt_addr"]:d["wgt_addr"] + es.steps(cfg, k, mode)]
            prod = wrap32(engines.matmul(eng, a, w, mode))                  # [ch, rows]
            if d["scaled"]:
                m = self.scale.reshape(-1)[d["scale_addr"]:d["scale_addr"] + ch]
                prod = wrap32(rne_shift(prod.astype(np.int64) * m.astype(np.int64)[:, None],
                                         d["shift"]))
            dst = slice(d["acc_addr"], d["acc_addr"] + ch)
            if d["accumulate"]:
                prod = prod.astype(np.int64) + self.acc[dst]
            self.acc[dst] = wrap32(prod)
            self.counters["macs"] += k * cfg.rows * ch
        elif op == Opcode.REQUANT:
            n = d["count"]
            acc = self.acc[d["acc_addr"]:d["acc_addr"] + n]
            mult = self.scale.reshape(-1)[d["scale_addr"]:d["scale_addr"] + n]
            res = self.act[d["res_addr"]:d["res_addr"] + n] if d["residual"] else None
            self.act[d["out_addr"]:d["out_addr"] + n] = requant(
                acc, mult, d["shift"], res, bool(d["relu"]))
        elif op == Opcode.SFU:
            self._sfu(d)
        # SYNC: waits and releases only

    def _sfu(self, d):
        f, n, sh = d["func"], d["count"], d["shift"]
        i0, i1 = d["imm0"], d["imm1"]
        s16 = lambda v: v - (1 << 16) if v >= 1 << 15 else v      # noqa: E731
        src = self.acc if sfu.uses(f)[0] == "acc" else self.act
        a = src[d["src"]:d["src"] + n]
        b = self.act[d["src2"]:d["src2"] + n]
        gamma = self.scale.reshape(-1)[d["src2"]:d["src2"] + n]
        mask = (bool(d["causal"]), s16(i1), bool(d["rel"]))
        if f == SfuFunc.TABLE:
            self.table = a.reshape(-1).copy()
            return
        # SOFTMAX makes all three passes; SOFTMAX_MAX / _SUM / _OUT one each
        if f == SfuFunc.SOFTMAX or (f == SfuFunc.SOFTMAX_MAX and i0 & 1):
            self.sm_max[:] = sfu.MAX_START
            self.sm_sum[:] = 0
        if f in (SfuFunc.SOFTMAX, SfuFunc.SOFTMAX_MAX):
            self.sm_max = sfu.softmax_max(a, self.sm_max, *mask)
        if f in (SfuFunc.SOFTMAX, SfuFunc.SOFTMAX_SUM):
            self.sm_sum = sfu.softmax_sum(a, self.sm_max, self.sm_sum, i0, sh, *mask)
        if f in (SfuFunc.SOFTMAX_MAX, SfuFunc.SOFTMAX_SUM):
            return
        softmax_out = lambda: sfu.softmax_out(a, self.sm_max, self.sm_sum, i0, sh,  # noqa: E731
                                              *mask)
        out = {
            SfuFunc.RMSNORM: lambda: sfu.rmsnorm(a, gamma, i0, sh),
            SfuFunc.LAYERNORM: lambda: sfu.layernorm(a, gamma, i0, sh),
            SfuFunc.SOFTMAX: softmax_out,
            SfuFunc.SOFTMAX_OUT: softmax_out,
            SfuFunc.LOOKUP: lambda: sfu.lookup(a, self.table),
            SfuFunc.MUL: lambda: sfu.mul(a, b, s16(i0), sh),
            SfuFunc.ADD: lambda: sfu.add(a, b, s16(i0), s16(i1), sh),
            SfuFunc.ROPE: lambda: sfu.rope(a, b, sh),
            SfuFunc.MERGE: lambda: sfu.merge(a, b, i0, i1),
            SfuFunc.TRANSPOSE: lambda: sfu.transpose(a),
            SfuFunc.BROADCAST: lambda: sfu.broadcast(a, i0),
        }[f]()
        self.act[d["dst"]:d["dst"] + n] = out


def wrap32(x):
    return ((np.asarray(x, np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)
