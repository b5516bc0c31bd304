"""User-facing errors.

A :class:`CurateError` is a problem with the user's input or environment: the CLI
prints its message as one line (no traceback) and exits with ``exit_code``.
"""


class CurateError(Exception):
    """An error the user can fix; printed as one line by the CLI.

    Exit codes: 2 bad input/usage (default), 3 a gate tripped (e.g. batch shift),
    4 an external service (database, Label Studio) is unreachable or refused us.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ServiceError(CurateError):
    """A database or server could not be reached or refused the request."""

    exit_code = 4
