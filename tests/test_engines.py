"""The engine registry: every ISA engine tag has its module in every layer, and each rule
the hardware and the golden model share gives the same answer on integers and in gates."""

import itertools
from types import SimpleNamespace

import pytest
from amaranth import Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator

from compiler.engines import PLUGINS
from compiler.quantize import FORMATS
from hw.config import ENGINES, load_config
from hw.engines import SPECS, mode_legal
from hw.isa import MODE_BITS, Counter, Engine, MatmulMode, mode_layout
from sim.faults.sites import structure_of
from sw.engines import ARITHMETIC


@pytest.mark.parametrize("engine", list(Engine), ids=lambda e: e.name.lower())
def test_every_engine_tag_has_its_module_in_every_layer(engine):
    name = engine.name.lower()
    assert name in ENGINES, "hw/config.py: not a configurable engine"
    assert name in data.Layout.cast(MatmulMode).members, "hw/isa.py: no MatmulMode member"
    assert data.Layout.cast(mode_layout(engine)).size <= MODE_BITS
    assert SPECS.get(engine) is not None and SPECS[engine].tag == engine, "hw/engines"
    assert isinstance(SPECS[engine].busy_counter, Counter)
    assert engine in ARITHMETIC, "sw/engines: no golden arithmetic"
    assert engine in PLUGINS, "compiler/engines: no packing"
    assert any(f.engine == engine for f in FORMATS.values()), \
        "compiler/quantize.py: no weight format runs on it"
    assert structure_of(f"compute.{name}.x") != "compute_ctrl", \
        "sim/faults/sites.py: its state is not a structure of its own"


def test_busy_counters_are_distinct():
    assert len({s.busy_counter for s in SPECS.values()}) == len(SPECS)


def _rules(cfg, es, k, act_addr, mode, raw):
    return {"steps": es.steps(cfg, k, mode), "illegal": es.illegal(cfg, k, mode),
            "misaligned": es.misaligned(act_addr), "legal_bits": mode_legal(es.tag, raw)}


@pytest.mark.parametrize("engine", list(Engine), ids=lambda e: e.name.lower())
def test_rules_agree_on_integers_and_in_gates(engine):
    """Every (k, act_addr, mode) over a range that covers each rule's cases: the rule built
    as gates (simulated) equals the rule on integers, where the instruction is legal (an
    illegal one is refused before steps count)."""
    cfg = load_config("tiny").replace(lut_wbits=(1, 3))
    es = SPECS[engine]
    m = Module()
    k, act, raw = Signal(16), Signal(16), Signal(MODE_BITS)
    hw_mode = MatmulMode(raw)[es.name]
    outs = {n: Signal(16, name=n) for n in ("steps", "illegal", "misaligned", "legal_bits")}
    for n, v in _rules(cfg, es, k, act, hw_mode, raw).items():
        m.d.comb += outs[n].eq(v)
    cases = list(itertools.product(range(0, 13), range(0, 6), range(0, 1 << 5)))
    seen = []

    async def bench(ctx):
        for kk, aa, rr in cases:
            ctx.set(k, kk)
            ctx.set(act, aa)
            ctx.set(raw, rr)
            got = {n: ctx.get(s) for n, s in outs.items()}
            fields = {name: (rr >> f.offset) & ((1 << f.width) - 1)
                      for name, f in data.Layout.cast(mode_layout(engine))}
            want = _rules(cfg, es, kk, aa, SimpleNamespace(**fields), rr)
            legal = want["legal_bits"] and not want["illegal"] and kk > 0
            for n in ("illegal", "misaligned", "legal_bits"):
                assert bool(got[n]) == bool(want[n]), (n, kk, aa, rr)
            if legal:
                assert got["steps"] == want["steps"], ("steps", kk, aa, rr)
                seen.append(rr)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen, "no legal case was compared"
