"""The one exception type for user mistakes the CLI reports in one line, the CLI's exit
statuses, and its way of telling the user what it does."""

import sys

__all__ = ["UserError", "say", "EXIT_USER", "EXIT_MISMATCH", "EXIT_ACCEL", "positive_int",
           "count", "positive_float"]

#: Exit statuses: a user mistake, executors that disagree, the accelerator's error flag.
EXIT_USER, EXIT_MISMATCH, EXIT_ACCEL = 2, 3, 4


class UserError(Exception):
    pass


def say(msg):
    """A progress or status line on stderr (stdout stays for results and ``--json``)."""
    print(msg, file=sys.stderr, flush=True)


def _number(kind, test, what):
    import argparse

    def parse(text):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not test(x):
            raise argparse.ArgumentTypeError(f"{text} must be {what}")
        return x
    parse.__name__ = what       # argparse names the type in its messages
    return parse


#: argparse types: an int >= 1, an int >= 0, a float > 0 (a bad value is one line, exit 2)
positive_int = _number(int, lambda x: x >= 1, "1 or more")
count = _number(int, lambda x: x >= 0, "0 or more")
positive_float = _number(float, lambda x: x > 0 and x != float("inf"), "more than 0")
