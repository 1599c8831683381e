"""``llmaccel bitstream`` and ``llmaccel program``: board builds from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sw.errors import count, positive_float, positive_int

__all__ = ["add_parsers", "EXIT_TIMING"]

EXIT_TIMING = 5


def _say(msg):
    print(msg, file=sys.stderr, flush=True)


def _pct(u):
    return f"{u['used']}/{u['available']} ({100 * u['used'] / max(1, u['available']):.0f}%)"


def cmd_bitstream(args):
    from hw.config import load_config
    from sim.build import Progress
    from .targets import BuildTimeout, FitError, build, get_board
    from .fit import fit_problems
    board = get_board(args.board)
    cfg = load_config(args.config)
    problems = fit_problems(board, cfg)
    if problems and not args.force:
        raise FitError(f"config {cfg.name!r} cannot fit the {board.name}: "
                       + "; ".join(problems) + " (--force builds anyway)")
    out = Path(args.output or f"build/boards/{board.name}-{cfg.name}")
    progress = Progress(f"bitstream {board.name}", quiet=args.json)
    try:
        res = build(board, cfg, out_dir=out, clock_mhz=args.clock_mhz, baud=args.baud,
                    progress=progress, seed=args.seed, ram_outreg=args.ram_outreg,
                    timeout_s=None if args.timeout_min is None else 60 * args.timeout_min)
    except (FitError, BuildTimeout) as e:
        if args.json:       # the numbers, machine-readable, besides the one-line error
            print(json.dumps({"board": board.name, "config": cfg.name,
                              "fits": False if isinstance(e, FitError) else None,
                              "utilization": e.utilization, "error": str(e)}))
        raise
    d = {**res.to_dict(), "fits": True}
    if res.vendor:
        d["note"] = (f"vendor flow: run {out}/build_top.sh with Vivado on PATH to make "
                     f"{board.bitstream}")
    if args.json:
        print(json.dumps(d))
    else:
        if res.vendor:
            print(f"{board.title}: Vivado project for {cfg.name} written to {out}")
            print(d["note"])
            return 0
        print(f"{board.title}, config {cfg.name}: bitstream {res.bitstream} "
              f"({d['bitstream_bytes']} bytes) in {res.build_s:.0f} s")
        for k in ("lut", "ff", "bram", "dsp", "spram"):
            if k in res.utilization:
                print(f"{k.upper():>8}: {_pct(res.utilization[k])}")
        print(f"{'Fmax':>8}: {res.fmax_mhz} MHz (requested {res.clock_mhz:g} MHz)")
        t = res.timing
        if t and t["failing_endpoints"]:
            print(f"{t['failing_endpoints']} of {t['endpoints']} endpoints over the "
                  f"{t['period_ns']:g} ns period; the worst groups (all of them: python -m "
                  f"boards.sta {out}/top.sdf):")
            for g in t["worst_paths"][:5]:
                print(f"  {g['delay_ns']:6.2f} ns  x{g['endpoints']:<5} {g['source']} -> "
                      f"{g['sink']}")
    if res.vendor or res.timing_met:
        return 0
    msg = (f"timing failure: {cfg.name} on {board.name} reaches {res.fmax_mhz} MHz, below "
           f"the requested {res.clock_mhz:g} MHz; the bitstream would not work reliably")
    if args.allow_timing_failure:
        _say(f"llmaccel: warning: {msg} (kept: --allow-timing-failure)")
        return 0
    _say(f"llmaccel: error: {msg}. Lower clock_mhz (or --clock-mhz), or pass "
         f"--allow-timing-failure to keep it anyway")
    return EXIT_TIMING


def cmd_program(args):
    from .targets import get_board, program
    board = get_board(args.board)
    bit = Path(args.bitstream or f"build/boards/{board.name}-{args.config}/{board.bitstream}")
    cmd = program(board, bit, dry_run=args.dry_run)
    print(("would run: " if args.dry_run else "programmed with: ") + " ".join(map(str, cmd)))
    return 0


def cmd_board_sim(args):
    import time
    from hw.config import load_config
    from .sim import BoardSim, PtyBoard
    cfg = load_config(args.config)
    pty = PtyBoard(BoardSim(cfg)).start()
    print(f"simulated {cfg.name} board on {pty.path} (any baud rate); for example\n"
          f"  llmaccel run PROGRAM --config {cfg.name} --executor board --port {pty.path}\n"
          f"Ctrl-C stops it.", flush=True)
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    pty.stop()
    return 0


def add_parsers(sub):
    from .targets import BOARDS
    b = sub.add_parser("bitstream", help="build a bitstream (or a vendor project) for a board")
    b.add_argument("--board", required=True, help=f"one of {', '.join(BOARDS)}")
    b.add_argument("--config", required=True)
    b.add_argument("--clock-mhz", type=positive_float, help="override the config's clock_mhz")
    b.add_argument("--baud", type=positive_int, help="UART baud rate (default 1000000)")
    b.add_argument("-o", "--output", help="build directory (default build/boards/BOARD-CONFIG)")
    b.add_argument("--timeout-min", type=positive_float, metavar="MIN",
                   help="stop the tools after this many minutes (default: no limit)")
    b.add_argument("--seed", type=count, help="nextpnr's placement seed (default: the "
                   "config's pnr_seed, else nextpnr's own); "
                   "another seed places differently, which may route a congested design "
                   "the first did not")
    b.add_argument("--ram-outreg", action="store_true",
                   help="ECP5: move the registers after block RAM reads into the RAMs' own "
                        "output registers (0.96 ns from the clock instead of 5.8 ns; "
                        "docs/boards.md)")
    b.add_argument("--allow-timing-failure", action="store_true",
                   help="exit 0 even when Fmax is below the requested clock")
    b.add_argument("--force", action="store_true",
                   help="build even when the configuration cannot fit the device")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_bitstream)
    p = sub.add_parser("program", help="load a bitstream onto an attached board")
    p.add_argument("--board", required=True, help=f"one of {', '.join(BOARDS)}")
    p.add_argument("--config", default="ice40", help="config whose default build to load")
    p.add_argument("--bitstream", help="bitstream file (default: the last `llmaccel "
                   "bitstream` build of --board/--config)")
    p.add_argument("--dry-run", action="store_true", help="print the programmer command only")
    p.set_defaults(fn=cmd_program)
    s = sub.add_parser("board-sim", help="serve a simulated board (Verilated board top) on a "
                       "pseudo-terminal, for host software without a board")
    s.add_argument("--config", required=True)
    s.add_argument("--seconds", type=positive_float, help="stop after this long (default: Ctrl-C)")
    s.set_defaults(fn=cmd_board_sim)
