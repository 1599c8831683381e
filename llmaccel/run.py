"""``llmaccel run``: a program on any executor, optionally checked against the golden model."""

from __future__ import annotations

import json
from pathlib import Path

from hw.config import load_config
from sw.errors import EXIT_ACCEL, EXIT_MISMATCH, UserError, count, positive_int, say
from sw.program import MemoryImage, load_program

__all__ = ["add_parsers", "executor"]


def executor(name, config, quiet=False, port=None, baud=None, waves=None, window=None,
             timeline=False):
    if (waves or timeline) and name != "verilator":
        raise UserError("--waves and --timeline need --executor verilator (the fast runner)")
    if name == "board":
        from boards.host import BoardExecutor
        if not port:
            raise UserError("--executor board needs --port (the board's serial device)")
        return BoardExecutor(config, port, baud=baud or 1_000_000)
    if name == "board-sim":
        from boards.host import BoardExecutor
        from boards.sim import BoardSim, SimSerial
        return BoardExecutor(config, SimSerial(BoardSim(config, quiet=quiet)), slack=0.001,
                             resync=0.001)
    if name == "golden":
        from sw.golden import Machine
        return Machine(config)
    if name == "verilator":
        from sim.fast import FastRunner
        return FastRunner(config, quiet=quiet, waves=waves, window=window, timeline=timeline)
    if name == "pyverilator":
        from sim.interactive import InteractiveRunner
        return InteractiveRunner(config, quiet=quiet)
    raise UserError(f"unknown executor {name!r}; choose golden, verilator, pyverilator, board "
                    f"or board-sim")


def cmd_run(args):
    cfg = load_config(args.config)
    prog = load_program(args.program, cfg)
    mem_path = args.memory or str(Path(args.program).with_suffix("").with_suffix("")) + ".mem.npz"
    if not Path(mem_path).exists():
        raise UserError(f"{mem_path}: no such memory image (give --memory)")
    mem = MemoryImage.load(mem_path)
    window = wave_window(args)
    if args.timeline:
        timeline_path(args.timeline)
    ex = executor(args.executor, cfg, quiet=args.json, port=args.port, baud=args.baud,
                  waves=args.waves, window=window, timeline=bool(args.timeline))
    out, st = ex.run(prog, mem)
    if args.waves:
        last = min(window[1], st["sim_cycles"]) - 1
        say(f"waveform: {args.waves}, cycles {window[0]} to {last}")
    if args.timeline:
        write_timeline(ex.timeline, args.timeline)
    result = {"executor": args.executor, "stats": st}
    if args.check and args.executor != "golden":
        from sw.golden import Machine
        ref, rst = Machine(cfg).run(prog, mem)
        result["bit_exact"] = ref.data == out.data and rst["error"] == st["error"]
    if args.output:
        out.save(args.output)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in st.items():
            print(f"{k:>16}: {v}")
        if "bit_exact" in result:
            print(f"{'bit_exact':>16}: {result['bit_exact']}")
    if st.get("error"):
        say(f"llmaccel: the accelerator stopped with error {st['error']}")
        return EXIT_ACCEL
    return 0 if result.get("bit_exact", True) else EXIT_MISMATCH


def wave_window(args):
    """``(start, stop)`` from ``--from`` and ``--cycles``, checked; None without --waves."""
    if args.waves is None:
        if args.start is not None or args.cycles is not None:
            raise UserError("--from and --cycles choose the cycles of a waveform: add --waves")
        return None
    from sim.fast import wave_format
    try:
        wave_format(args.waves)
    except ValueError as e:
        raise UserError(str(e)) from None
    start = args.start or 0     # (the option types refuse negative or zero values)
    return (start, start + args.cycles if args.cycles else 2 ** 64 - 1)


def timeline_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise UserError(f"--timeline {path}: give a .json file (a PNG is written beside it)")
    return path


def write_timeline(tl, path):
    """The Perfetto JSON at ``path`` and the utilisation PNG beside it."""
    path = timeline_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tl.write_trace(path)
    tl.write_png(path.with_suffix(".png"))
    say(f"timeline: {path} (open in ui.perfetto.dev or chrome://tracing), "
        f"{path.with_suffix('.png')}")


def add_wave_options(r):
    r.add_argument("--waves", metavar="FILE",
                   help="write a waveform (.fst or .vcd) of the run (the traced build)")
    r.add_argument("--from", dest="start", type=count, metavar="C",
                   help="first cycle of the waveform (default 0: the start pulse)")
    r.add_argument("--cycles", type=positive_int, metavar="N", help="cycles in the waveform "
                   "(default: to the end of the run)")
    r.add_argument("--timeline", metavar="FILE.json",
                   help="write a timeline of every unit (Perfetto JSON, and a PNG beside it)")


def add_parsers(sub):
    r = sub.add_parser("run", help="run a program on an executor")
    r.add_argument("program")
    r.add_argument("--memory", help="memory image (.mem.npz); default: beside the program")
    r.add_argument("--config", default="default")
    r.add_argument("--executor", default="verilator",
                   help="golden, verilator, pyverilator, board (a board on --port) or "
                   "board-sim (the board top simulated behind a UART)")
    r.add_argument("--port", help="serial device of the board (--executor board)")
    r.add_argument("--baud", type=positive_int, help="baud rate of the board link (default 1000000)")
    r.add_argument("--check", action="store_true", help="compare with the golden model")
    r.add_argument("-o", "--output", help="write the final memory image here")
    r.add_argument("--json", action="store_true")
    add_wave_options(r)
    r.set_defaults(fn=cmd_run)
