"""Reading the files the service is given (config.yaml, rules, CSV data, the ownership file): each
must be a regular file within its size limit, or it is refused with a message that says so.

A device (``/dev/zero``), a named pipe or a socket would hang a reader or never end, and a file of
gigabytes would exhaust memory long before its first row is checked; none of them gets read. The
type is checked before the file is opened (opening a named pipe waits for a writer, opening a
device can act on it), and again on the open file, which is opened without waiting; a file that
grows past its limit while it is read is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from anomaly.errors import InputError, Problem

MB = 1_000_000
#: A CSV file of metrics, change history or ownership periods: a year of a large portfolio's
#: campaign-days is well under this; a larger export can be split into several files (a glob in a
#: source's ``metrics`` reads them all).
MAX_CSV_BYTES = 512 * MB

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)
# O_NONBLOCK: a named pipe that appears between the check and the open must not make open wait
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class FileReadError(InputError):
    """A file could not be read as what it should be: missing, not a regular file, over its size
    limit, or unreadable. ``reason`` is the message without the file's path."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__([Problem(self.path, "", reason)])


def read_limited(path: str | Path, *, expected: str, limit: int) -> bytes:
    """The whole content of ``path``, a regular file of at most ``limit`` bytes.

    ``expected`` names what the file should be in messages (``"a YAML file"``, ``"a CSV file"``).
    Raise ``FileReadError``: ``file not found``, ``is a character device, not a regular file;
    expected a CSV file``, ``is 3.2 GB (3,200,000,000 bytes), over the 512 MB limit for a CSV
    file``, ``cannot read the file (Permission denied)``.
    """
    try:
        _check(path, os.stat(path), expected, limit)
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise FileReadError(path, "file not found") from None
    except OSError as exc:
        raise FileReadError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except ValueError as exc:  # a path the system cannot take, e.g. with a NUL character
        raise FileReadError(path, f"cannot read the file ({exc})") from None
    with os.fdopen(fd, "rb") as file:
        try:
            _check(path, os.fstat(fd), expected, limit)  # what was opened, should the path have been replaced
            data = file.read(limit + 1)
        except OSError as exc:
            raise FileReadError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if len(data) > limit:  # it grew while being read, or reports no size (as /proc files do)
        raise FileReadError(path, f"is larger than the {describe_size(limit)} limit for {expected}")
    return data


def _check(path: str | Path, info: os.stat_result, expected: str, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "another kind of file")
        raise FileReadError(path, f"is {kind}, not a regular file; expected {expected}")
    if info.st_size > limit:
        raise FileReadError(path, f"is {describe_size(info.st_size, exact=True)}, over the {describe_size(limit)} limit for {expected}")


def describe_size(size: int, *, exact: bool = False) -> str:
    """A size in bytes as people read it: ``"812 bytes"``, ``"512 MB"``, ``"3.2 GB"`` (decimal
    units); with ``exact``, a rounded figure is followed by the bytes (``"1.0 MB (1,000,003 bytes)"``)."""
    if size < 10_000:
        return f"{size:,} bytes"
    for unit, name in ((10**9, "GB"), (MB, "MB"), (1000, "kB")):
        if size >= unit:
            break
    text = f"{size // unit:,} {name}" if size % unit == 0 else f"{size / unit:,.1f} {name}"
    return f"{text} ({size:,} bytes)" if exact and size % unit else text
