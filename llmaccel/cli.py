"""The ``llmaccel`` command line.

Every user mistake (bad config, corrupt or foreign program, unsupported model, out-of-range
address) ends with one line on stderr and a non-zero exit status, never a traceback; set
LLMACCEL_DEBUG=1 to see one anyway.
"""

from __future__ import annotations

import argparse
import os
import sys

import boards.cli
import compiler.cli
import hw.cli
import sim.cli
import sw.cli
from compiler.lower import CompileError
from hw.config import ConfigError
from hw.isa import IsaError
from hw.synth import SynthError
from sim.build import BuildError
from sw.errors import EXIT_USER, UserError, say
from sw.program import ProgramError
from . import demo, generate, run

__all__ = ["main", "build_parser", "COMMANDS"]

#: The modules contributing subcommands (``add_parsers(sub)``), in the order help lists them.
COMMANDS = (demo, generate, hw.cli, compiler.cli, run, sw.cli, sim.cli, boards.cli)


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option or value in one line (no usage block) and exit 2."""

    def error(self, message):
        say(f"llmaccel: error: {message} (see `{self.prog} --help`)")
        sys.exit(EXIT_USER)


def build_parser():
    p = _Parser(prog="llmaccel", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for module in COMMANDS:
        module.add_parsers(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    known = (UserError, ConfigError, ProgramError, CompileError, IsaError, SynthError, OSError)
    try:
        return args.fn(args)
    except known as e:
        if os.environ.get("LLMACCEL_DEBUG"):
            raise
        if isinstance(e, OSError) and e.strerror and e.filename:
            e = f"{e.filename}: {e.strerror.lower()}"      # not Python's "[Errno 21] ..."
        say(f"llmaccel: error: {e}")
        return EXIT_USER
    except BuildError as e:
        if os.environ.get("LLMACCEL_DEBUG"):
            raise
        say(f"llmaccel: error: the Verilator build failed: {str(e).splitlines()[0]}")
        return EXIT_USER
    except KeyboardInterrupt:
        say("llmaccel: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
