"""``llmaccel run``: a program on any executor, optionally checked against the golden model."""

from __future__ import annotations

import json
from pathlib import Path

from hw.config import load_config
from sw.errors import EXIT_ACCEL, EXIT_MISMATCH, UserError, say
from sw.program import MemoryImage, load_program

__all__ = ["add_parsers", "executor"]


def executor(name, config, quiet=False, port=None, baud=None):
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
        return FastRunner(config, quiet=quiet)
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
    ex = executor(args.executor, cfg, quiet=args.json, port=args.port, baud=args.baud)
    out, st = ex.run(prog, mem)
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


def add_parsers(sub):
    r = sub.add_parser("run", help="run a program on an executor")
    r.add_argument("program")
    r.add_argument("--memory", help="memory image (.mem.npz); default: beside the program")
    r.add_argument("--config", default="default")
    r.add_argument("--executor", default="verilator",
                   help="golden, verilator, pyverilator, board (a board on --port) or "
                   "board-sim (the board top simulated behind a UART)")
    r.add_argument("--port", help="serial device of the board (--executor board)")
    r.add_argument("--baud", type=int, help="baud rate of the board link (default 1000000)")
    r.add_argument("--check", action="store_true", help="compare with the golden model")
    r.add_argument("-o", "--output", help="write the final memory image here")
    r.add_argument("--json", action="store_true")
    r.set_defaults(fn=cmd_run)
