"""Hardware protections: no false alarms on correct runs; injected upsets that would be
silent data corruption on the unprotected design raise the error flag instead."""

import numpy as np
import pytest

from hw.config import ConfigError
from hw.protect import SCRATCHPADS
from sw.golden import Machine
from test_rtl_random import check_program
from test_state import _long_matmul


@pytest.fixture(scope="module")
def prot(tiny):
    return tiny.replace(name="tiny_protected", parity=SCRATCHPADS, acc_check="residue")


@pytest.fixture(scope="module")
def prot_rtl(prot):
    from sim.fast import FastRunner
    return FastRunner(prot, quiet=True)


def test_config_validation(tiny):
    with pytest.raises(ConfigError, match=r"parity must be a list from \['act', 'wgt', 'acc', "
                                          r"'scale'\], not \['dram'\]"):
        tiny.replace(parity=["dram"])
    with pytest.raises(ConfigError, match=r"acc_check must be one of \['none', 'residue'\]"):
        tiny.replace(acc_check="tmr")
    assert tiny.replace(parity=["wgt", "act"]).parity == ("act", "wgt")
    # unprotected configs keep their hash (programs compiled before still run)
    assert tiny.replace(parity=(), acc_check="none").hash == tiny.hash
    assert tiny.replace(parity=["act"]).hash != tiny.hash


@pytest.mark.parametrize("seed", range(300, 312))
def test_protected_design_is_bit_exact_without_false_alarms(prot, prot_rtl, seed):
    check_program(prot, prot_rtl, seed)


def _run_with_upset(cfg, rtl, name, bit, index=0, *, wait_acc=True, seed=3):
    """Run the long matmul, flip ``name[index]`` bit ``bit`` once the array is computing."""
    prog, mem = _long_matmul(cfg, seed=seed)
    gold, _ = Machine(cfg).run(prog, mem)
    elems = {e.name: e for e in rtl.state_elements()}
    acc_pe = elems["compute.systolic.array.pe0_0_acc"]
    rtl.start(rtl.load(prog, mem))
    while rtl.peek(acc_pe) == 0:
        assert not rtl.step(1)
    rtl.step(20)
    rtl.flip(elems[name], bit, index)
    assert rtl.step(100_000), "hang after the upset"
    st = rtl.stats()
    return st["error"], rtl.read_memory(mem).read("acc"), gold.read("acc")


@pytest.mark.parametrize("name,bit,index", [("act_bank3", 5, 49), ("wgt_mem", 2, 190)])
def test_parity_turns_scratchpad_sdc_into_due(tiny, tiny_rtl, prot, prot_rtl, name, bit, index):
    # entry 199 of the activations (bank 3, row 49) and of the weights is read near the end
    err, got, exp = _run_with_upset(tiny, tiny_rtl, name, bit, index)
    assert err is None and not np.array_equal(got, exp), "unprotected: expected SDC"
    err, _, _ = _run_with_upset(prot, prot_rtl, name, bit, index)
    assert err == "PARITY"


@pytest.mark.parametrize("name,bit", [("compute.systolic.array.pe0_0_acc", 20),
                                      ("compute.systolic.array.pe2_3_acc", 0),
                                      ("compute.systolic.array.pe1_1_a", 7)])
def test_residue_turns_accumulator_sdc_into_due(tiny, tiny_rtl, prot, prot_rtl, name, bit):
    err, got, exp = _run_with_upset(tiny, tiny_rtl, name, bit)
    assert err is None and not np.array_equal(got, exp), "unprotected: expected SDC"
    err, _, _ = _run_with_upset(prot, prot_rtl, name, bit)
    assert err == "RESIDUE"
