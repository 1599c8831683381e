"""The run's position: how one program serves every token position of its length bucket.

The host gives a 16-bit position ``pos`` with START (configurations with the SFU). The
activations hold ``rows`` tokens per entry, one per lane, and decode puts the current token in
lane ``lane(pos)``: lane ``l`` then stands for position ``block(pos) + l``. Dispatch rewrites
the fields that are marked relative before the instruction enters its queue, so every unit
sees plain absolute fields and checks them as usual:

- LOAD / STORE: ``dram_addr += block(pos) * pos_mult`` (KV-cache blocks, RoPE table rows);
- SFU with ``rel``: a softmax's (SOFTMAX, SOFTMAX_MAX/_SUM/_OUT) ``imm1 += pos`` (the
  query position of every lane, for the causal mask: a decode step's lanes hold query heads
  of the one token), MERGE's ``imm0``, ``imm1`` and BROADCAST's ``imm0 += lane(pos)`` (the
  token's lane).

The rules are written once, on ints (golden model) and on Amaranth values (dispatch).
"""

from __future__ import annotations

from amaranth.hdl import Signal, Value

from .isa import SOFTMAX_FUNCS, DmaInsn, Opcode, SfuFunc, SfuInsn, view

__all__ = ["POS_BITS", "block", "lane", "relocate_fields", "relocate_word"]

POS_BITS = 16


def block(pos, rows):
    """The position of lane 0 of the entry holding position ``pos``."""
    return pos & (((1 << POS_BITS) - 1) & ~(rows - 1))


def lane(pos, rows):
    """The lane of position ``pos``."""
    return pos & (rows - 1)


def _wrap(v, bits):
    return v[:bits] if isinstance(v, Value) else v % (1 << bits)


def _dma(addr, mult, pos, rows):
    return _wrap(addr + block(pos, rows) * mult, 32)


def _softmax_q0(imm1, pos):
    return _wrap(imm1 + pos, 16)


def _merge_lanes(imm, pos, rows):
    return _wrap(imm + lane(pos, rows), 16)


def relocate_fields(d: dict, pos: int, rows: int) -> dict:
    """A decoded instruction's fields after dispatch at position ``pos`` (``d`` itself when
    nothing in it is relative, else a new dict)."""
    op = d["opcode"]
    if op in (Opcode.LOAD, Opcode.STORE) and d["pos_mult"]:
        d = dict(d)
        d["dram_addr"] = _dma(d["dram_addr"], d["pos_mult"], pos, rows)
    elif op == Opcode.SFU and d["rel"]:
        d = dict(d)
        if d["func"] in SOFTMAX_FUNCS:
            d["imm1"] = _softmax_q0(d["imm1"], pos)
        elif d["func"] in (SfuFunc.MERGE, SfuFunc.BROADCAST):
            d["imm0"] = _merge_lanes(d["imm0"], pos, rows)
            if d["func"] == SfuFunc.MERGE:
                d["imm1"] = _merge_lanes(d["imm1"], pos, rows)
    return d


def relocate_word(m, word, pos, rows):
    """The same rewrite on an instruction word (Amaranth): returns the new word, a
    combinational signal of ``word`` and ``pos``."""
    out = Signal.like(word, name="relocated")
    m.d.comb += out.eq(word)
    dma, sf = view(DmaInsn, word), view(SfuInsn, word)
    odma, osf = view(DmaInsn, out), view(SfuInsn, out)
    with m.Switch(dma.opcode):
        with m.Case(Opcode.LOAD, Opcode.STORE):
            m.d.comb += odma.dram_addr.eq(_dma(dma.dram_addr, dma.pos_mult, pos, rows))
        with m.Case(Opcode.SFU):
            with m.If(sf.rel & sf.func.as_value().matches(*(f.value for f in SOFTMAX_FUNCS))):
                m.d.comb += osf.imm1.eq(_softmax_q0(sf.imm1, pos))
            with m.If(sf.rel & sf.func.as_value().matches(SfuFunc.MERGE.value,
                                                          SfuFunc.BROADCAST.value)):
                m.d.comb += osf.imm0.eq(_merge_lanes(sf.imm0, pos, rows))
            with m.If(sf.rel & (sf.func == SfuFunc.MERGE)):
                m.d.comb += osf.imm1.eq(_merge_lanes(sf.imm1, pos, rows))
    return out
