"""The one exception type for user mistakes the CLI reports in one line, the CLI's exit
statuses, and its way of telling the user what it does."""

import sys

__all__ = ["UserError", "say", "EXIT_USER", "EXIT_MISMATCH", "EXIT_ACCEL"]

#: Exit statuses: a user mistake, executors that disagree, the accelerator's error flag.
EXIT_USER, EXIT_MISMATCH, EXIT_ACCEL = 2, 3, 4


class UserError(Exception):
    pass


def say(msg):
    """A progress or status line on stderr (stdout stays for results and ``--json``)."""
    print(msg, file=sys.stderr, flush=True)
