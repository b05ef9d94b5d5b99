"""One error type for bad input, which every command prints as one line without a traceback.

A config value, a dataset file, a checkpoint or an option that cannot be used raises a
subclass of `UserError` (ConfigError, FormatError, EvalError ...) whose message names the
field or file and what would be accepted; the command line catches `USER_ERRORS` and prints
`jessl: error: <message>`. Anything else is a bug, and its traceback shows.
"""

from __future__ import annotations

import sys


class UserError(Exception):
    """Bad input: the message names the field, file or record and what is wrong with it."""


# a path the user gave that is missing, a folder, or not theirs to read or replace
USER_ERRORS = (UserError, FileExistsError, FileNotFoundError, IsADirectoryError, PermissionError)


def print_error(err: BaseException, prog: str = "jessl") -> None:
    """`prog: error: message` on stderr, the message's lines joined into one."""
    message = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    print(f"{prog}: error: {message}", file=sys.stderr)
