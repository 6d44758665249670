"""Errors a user can act on: the CLI prints the message as one line and exits with ``exit_code``."""


from pathlib import Path


def read_user_file(option: str, path: str | Path) -> str:
    """The text of a file the user named with `option`; a missing or unreadable file is a UserError."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{option}: {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{option}: cannot read {p}: {exc}") from None


class UserError(Exception):
    """A problem the user can fix; the message says what happened and what to do."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
