"""Fault-injection primitives of the fast runner: state enumeration, peek/poke,
snapshot/restore, and a real injected upset changing exactly what it should."""

import numpy as np

from sw.golden import Machine


def _long_matmul(cfg, k=200, seed=0):
    """One MATMUL of ``k`` steps with its loads and store (the fault campaigns' ``matmul``
    workload): returns (program, memory)."""
    from sim.faults.workload import matmul_workload
    kern = matmul_workload(cfg, seed=seed, k=k).kernels[0]
    return kern.program, kern.memory


def test_state_enumeration(tiny, tiny_rtl):
    elems = {e.name: e for e in tiny_rtl.state_elements()}
    R, C = tiny.rows, tiny.cols
    for i in range(R):
        for j in range(C):
            e = elems[f"compute.systolic.array.pe{i}_{j}_acc"]
            assert (e.width, e.depth) == (tiny.systolic_acc_bits, 1)
            assert e.structure == "compute.systolic.array"
    for b in range(4):          # the activation scratchpad's four banks
        assert (elems[f"act_bank{b}"].width, elems[f"act_bank{b}"].depth) == \
            (8 * R, tiny.act_depth // 4)
    # the LUT engine's cells and table are state too
    assert (elems["compute.lut.array.cell0_0_acc"].width) == 28
    assert elems["compute.lut.array.cell0_0_acc"].structure == "compute.lut.array"
    assert "compute.lut.pre.o__payload" in elems or any(
        n.startswith("compute.lut.pre.") for n in elems)
    assert (elems["acc_mem"].width, elems["acc_mem"].depth) == (32 * R, tiny.acc_depth)
    assert (elems["wgt_mem"].depth, elems["scale_mem"].depth) == (tiny.wgt_depth, tiny.scale_depth)
    assert "tok_load_compute" in elems and "cnt_cycles" in elems
    assert "fetch.pc" in elems and "compute.state" in elems
    # no combinational nets: the PE's adder output is a wire, not state
    assert "compute.systolic.array.pe0_0_sum" not in elems and "compute.systolic.array.pe0_0_res" in elems
    assert len(elems) > 100


def test_peek_poke(tiny, tiny_rtl):
    elems = {e.name: e for e in tiny_rtl.state_elements()}
    act = elems["act_bank1"]
    tiny_rtl.poke(act, 0xDEADBEEF, index=17)
    assert tiny_rtl.peek(act, 17) == 0xDEADBEEF & ((1 << act.width) - 1)
    tiny_rtl.flip(act, 3, index=17)
    assert tiny_rtl.peek(act, 17) == (0xDEADBEEF ^ 8) & ((1 << act.width) - 1)


def test_snapshot_restore_is_exact(tiny, tiny_rtl):
    prog, mem = _long_matmul(tiny)
    addr = tiny_rtl.load(prog, mem)
    tiny_rtl.start(addr)
    assert not tiny_rtl.step(150)
    snap = tiny_rtl.snapshot()
    assert tiny_rtl.step(100_000)
    first = (tiny_rtl.read_memory(mem).data, tiny_rtl.cycle)
    tiny_rtl.restore(snap)
    assert tiny_rtl.cycle == 150 + 1       # the start pulse is one cycle
    assert tiny_rtl.step(100_000)
    assert (tiny_rtl.read_memory(mem).data, tiny_rtl.cycle) == first
    gold, _ = Machine(tiny).run(prog, mem)
    assert first[0] == gold.data


def test_flip_in_live_accumulator_changes_exactly_that_output(tiny, tiny_rtl):
    prog, mem = _long_matmul(tiny, seed=1)
    gold, _ = Machine(tiny).run(prog, mem)
    acc_pe = {e.name: e for e in tiny_rtl.state_elements()}["compute.systolic.array.pe0_0_acc"]
    addr = tiny_rtl.load(prog, mem)
    tiny_rtl.start(addr)
    # mid-feed: the load of 200 rows at 1 beat/cycle takes ~400 cycles, then 200 k steps
    while tiny_rtl.peek(acc_pe) == 0:
        assert not tiny_rtl.step(1)
    tiny_rtl.step(50)
    tiny_rtl.flip(acc_pe, 20)
    assert tiny_rtl.step(100_000)
    got = tiny_rtl.read_memory(mem).read("acc").astype(np.int64)
    exp = gold.read("acc").astype(np.int64)
    diff = got - exp
    assert abs(diff[0, 0]) == 1 << 20
    diff[0, 0] = 0
    assert not diff.any()
