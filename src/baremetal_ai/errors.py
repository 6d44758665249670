"""Errors a user can act on: the CLI prints the message as one line and exits with ``exit_code``."""


class UserError(Exception):
    """A problem the user can fix; the message says what happened and what to do."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
