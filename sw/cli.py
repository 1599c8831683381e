"""``llmaccel disasm``: a program file's instructions."""

from __future__ import annotations

from hw.config import load_config
from .program import load_program

__all__ = ["add_parsers"]


def cmd_disasm(args):
    cfg = load_config(args.config)
    print(load_program(args.program, cfg).listing())
    return 0


def add_parsers(sub):
    da = sub.add_parser("disasm", help="list a program's instructions")
    da.add_argument("program")
    da.add_argument("--config", default="default")
    da.set_defaults(fn=cmd_disasm)
