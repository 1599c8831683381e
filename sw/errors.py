"""The one exception type for user mistakes the CLI reports in one line."""

__all__ = ["UserError"]


class UserError(Exception):
    pass
