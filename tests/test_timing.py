"""The pipelining knobs (hw/timing.py): derived from the clock, overridden from TOML, and
the only way the clock reaches the hardware."""

import pytest

from hw import verilog
from hw.config import AccelConfig, ConfigError, load_config
from hw.timing import KNOBS, LOW_CLOCK_MHZ, Pipelining


def test_knobs_follow_the_clock_and_each_has_a_reason():
    assert all(Pipelining.derive(LOW_CLOCK_MHZ + 1).__dict__.values())
    assert not any(Pipelining.derive(LOW_CLOCK_MHZ).__dict__.values())
    assert all(len(why) > 30 for why in KNOBS.values())


def test_overrides_from_toml(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text("clock_mhz = 24\n[timing]\nlut_skew = true\ncheck_lookahead = false\n")
    cfg = load_config(str(p))
    assert cfg.pipelining.lut_skew and not cfg.pipelining.check_lookahead
    assert not cfg.pipelining.bus_slices                # the rest follow the 24 MHz clock
    assert cfg.hash == cfg.replace(timing=()).hash      # no knob changes a result
    assert cfg.to_dict()["timing"] == {"check_lookahead": False, "lut_skew": True}


@pytest.mark.parametrize("timing,msg", [
    ({"lut_skw": True}, r"timing has no knob 'lut_skw'; knobs are check_lookahead, "),
    ({"lut_skew": 1}, r"timing\.lut_skew must be true or false, not 1"),
    ("fast", r"timing must be a table of knob = true/false, not 'fast'"),
])
def test_bad_knobs_name_the_problem(timing, msg):
    with pytest.raises(ConfigError, match=msg):
        AccelConfig(timing=timing)


@pytest.mark.parametrize("preset", ["tiny", "ulx3s"])
def test_the_clock_reaches_the_hardware_only_through_the_knobs(preset):
    """A fast clock with every knob off builds exactly the slow clock's Verilog."""
    cfg = load_config(preset)
    off = {k: False for k in KNOBS}
    assert verilog(cfg.replace(clock_mhz=200, timing=off)) == \
        verilog(cfg.replace(clock_mhz=LOW_CLOCK_MHZ))


@pytest.fixture(scope="module")
def mixed(tiny):
    """Both engines, shared ports, a 100 MHz target with every other knob off."""
    from sim.fast import FastRunner
    timing = {k: i % 2 == 0 for i, k in enumerate(sorted(KNOBS))}
    cfg = tiny.replace(name="tiny-mixed", clock_mhz=100, timing=timing,
                       scratchpad_ports="shared", sfu=False)
    return cfg, FastRunner(cfg, quiet=True)


@pytest.mark.parametrize("seed", range(5))
def test_random_programs_with_mixed_knobs(mixed, seed):
    """Knobs are independent choices: random programs still match the golden model bit
    for bit with half of them on."""
    from test_rtl_random import check_program
    check_program(*mixed, 9100 + seed)
