"""The fast runner's timeline: per unit, the busy cycles equal the hardware counters, and
the instructions each queue executor held are the golden model's, in its order."""

import json

import pytest

from compiler.randprog import random_program
from hw.config import load_config
from hw.isa import Counter, decode
from sim.fast import FastRunner
from sim.timeline import TRACKS
from sw.golden import Machine

_RUNNERS = {}


def _config(name, tiny):
    if name == "tiny":              # counter events registered (ev_* flops)
        return tiny
    if name == "lowclock":          # counters fed straight from the events
        return tiny.replace(requant_lanes=1, requant_mult_bits=2, systolic_drain="direct",
                            engines=("systolic",), queue_depth=0, clock_mhz=24,
                            scratchpad_ports="shared", sfu=False)
    return load_config(name)        # ice40: the counters' totals in a block RAM


@pytest.mark.parametrize("name,seed", [("tiny", 1), ("tiny", 2), ("lowclock", 3),
                                       ("ice40", 4)])
def test_timeline_agrees_with_counters_and_golden(name, seed, tiny, tmp_path):
    cfg = _config(name, tiny)
    if cfg not in _RUNNERS:
        _RUNNERS[cfg] = FastRunner(cfg, quiet=True, timeline=True)
    rtl = _RUNNERS[cfg]
    rp = random_program(cfg, seed)
    _, st = rtl.run(rp.program, rp.memory)
    gm = Machine(cfg)
    gm.run(rp.program, rp.memory)
    tl = rtl.timeline
    ctx = f"seed={seed} config={name}"
    assert st["error"] is None, ctx
    for track, c in TRACKS.items():
        total = st[c.name.lower()]
        per_cycle = cfg.bus_bytes if c in (Counter.FETCH_BYTES, Counter.BYTES_READ,
                                           Counter.BYTES_WRITTEN) else 1
        assert tl.busy_cycles(track) * per_cycle == total, f"{ctx}: {track}"
    for eng in cfg.engines:
        from hw.engines import SPECS
        es = next(s for s in SPECS.values() if s.name == eng)
        assert tl.busy_cycles(eng) == st[es.busy_counter.name.lower()], f"{ctx}: {eng}"
    if cfg.sfu:
        assert tl.busy_cycles("sfu") == st["sfu_busy"], ctx
    assert tl.instructions() == st["insns"], ctx
    for q, spans in tl.spans.items():
        golden = [d for gq, d in gm.executed if gq == q]
        assert [decode(s.word) for s in spans] == golden, f"{ctx}: queue {q.name}"
        for s in spans:
            assert s.enter < s.start < s.end <= tl.cycles, f"{ctx}: {s}"
    trace = tmp_path / "t.json"
    tl.write_trace(trace)
    events = json.loads(trace.read_text())["traceEvents"]
    assert sum(e["ph"] == "X" and "insn" in e["args"] for e in events) == st["insns"]
    tl.write_png(tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_timeline_of_sfu_programs(tiny):
    """The SFU's track equals its counter, and its spans are the golden model's."""
    from compiler.sfuprog import random_sfu_program
    if tiny not in _RUNNERS:
        _RUNNERS[tiny] = FastRunner(tiny, quiet=True, timeline=True)
    rtl = _RUNNERS[tiny]
    for seed in range(3):
        rp = random_sfu_program(tiny, seed)
        _, st = rtl.run(rp.program, rp.memory)
        gm = Machine(tiny)
        gm.run(rp.program, rp.memory)
        tl = rtl.timeline
        assert st["error"] is None and st["sfu_busy"] > 0
        assert tl.busy_cycles("sfu") == st["sfu_busy"], f"seed={seed}"
        for q, spans in tl.spans.items():
            assert [decode(s.word) for s in spans] == [d for gq, d in gm.executed if gq == q]
