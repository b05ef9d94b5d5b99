"""The errors that describe bad input (a config, a file, an option), which every command prints
as one line without a traceback; anything else is a bug, and its traceback shows."""

from __future__ import annotations


def user_errors() -> tuple:
    """Errors that describe bad input or a bad file, printed without a traceback."""
    from jessl.data import ConversionError, FormatError, ImageError, RecordError, SourceError
    return (ConversionError, FormatError, ImageError, RecordError, SourceError,
            FileExistsError, FileNotFoundError, IsADirectoryError, PermissionError)
