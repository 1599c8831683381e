"""FPGA builds mark the scratchpads' (and the counters' RAM's) read-write collisions
undefined (hw/synth.py, COLLISION_FREE_MEMORIES): no port may read an entry in the cycle
another writes it. Every port of those memories is traced on random programs, for a
config with separate ports and for the `ice40` preset (shared ports, direct drain, no
queues, counters in a RAM)."""

import fnmatch

import pytest

from compiler.randprog import random_program
from hw.config import load_config
from hw.synth import COLLISION_FREE_MEMORIES

_RUNNERS = {}


@pytest.mark.parametrize("name,seeds", [("tiny", range(0, 12)), ("ice40", range(0, 12))])
def test_no_read_write_collisions(tiny_rtl, name, seeds):
    from sim.fast import FastRunner
    cfg = load_config(name)
    if name == "tiny":
        r = tiny_rtl
    else:
        r = _RUNNERS.setdefault(name, FastRunner(cfg, quiet=True))
    traced = r.trace_ports()
    names = {v.index: v.name.rsplit(".", 1)[-1] for v in r.variables()}
    watched = {i for i in traced
               if any(fnmatch.fnmatch(names[i], p.rsplit(".", 1)[-1])
                      for p in COLLISION_FREE_MEMORIES)}
    banks = 4 if cfg.has_lut else 1
    expect = {"acc_mem", "wgt_mem", "scale_mem"} | {f"act_bank{b}" for b in range(banks)}
    if cfg.counter_store == "bram":
        expect.add("cnt_mem")
    assert {names[i] for i in watched} == expect, "every such memory must be traced"
    for seed in seeds:
        rp = random_program(cfg, seed)
        prog_addr = r.load(rp.program, rp.memory)
        r.trace(True)
        r.start(prog_addr)
        assert r.step(10_000_000), f"seed={seed}: no done"
        r.trace(False)
        cyc, mem, ent, kind = r.trace_events()
        reads = {(int(c), int(m), int(e)) for c, m, e, k in zip(cyc, mem, ent, kind)
                 if k == "r" and int(m) in watched}
        writes = {(int(c), int(m), int(e)) for c, m, e, k in zip(cyc, mem, ent, kind)
                  if k != "r" and int(m) in watched}
        both = sorted(reads & writes)
        assert not both, (f"seed={seed} config={name}: {len(both)} collisions, first "
                          f"(cycle, memory, entry): {both[0][0]}, {names[both[0][1]]}, "
                          f"{both[0][2]}")
        assert len(reads) > 20 and len(writes) > 20
