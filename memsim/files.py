"""Reading and writing files at memsim's edge: every failure is one :class:`InputError`
naming the field and the path, and every write is atomic (a temporary file in the same
folder, then ``os.replace``), so an interrupted or failed write never leaves half a file.

Readers: :func:`read_text` (missing, a folder, unreadable, binary or non-UTF-8 → error).
Writers: :func:`check_writable` (call it before long work starts), :func:`write_text`,
:func:`write_bytes`, and :func:`atomic_open` for streams (``sweep --out``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from memsim.errors import InputError

MAX_READ_BYTES = 1 << 30  # 1 GiB: larger inputs are not a config, profile or run file


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _path(path: Path | str, field: str) -> Path:
    """``path`` as a Path, refusing what no file system accepts (NUL bytes, overlong)."""
    text = str(path)
    if "\x00" in text or len(text) > 4096:
        raise InputError(field, text[:80], "is not a valid path")
    return Path(path)


def read_text(path: Path | str, field: str) -> str:
    """The UTF-8 text of ``path``; :class:`InputError` for a missing file, a folder, an
    unreadable, oversized, binary (NUL bytes) or non-UTF-8 file."""
    p = _path(path, field)
    if p.is_dir():
        raise InputError(field, str(p), "is a folder, not a file")
    try:
        size = p.stat().st_size
        if size > MAX_READ_BYTES:
            raise InputError(field, str(p), f"is {size} bytes, more than the "
                             f"{MAX_READ_BYTES} memsim reads")
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(field, str(p), f"cannot be read: {_reason(exc)}") from None
    if b"\x00" in data:
        raise InputError(field, str(p), "is a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(field, str(p), f"is not UTF-8 text (byte {exc.start})") from None


def check_writable(path: Path | str, field: str, *, folder: bool = False) -> Path:
    """Fail now, before long work, if ``path`` cannot be written.

    A file path must not be a folder and its parent must be an existing, writable folder;
    with ``folder=True`` the path is a folder to write into (created later if missing; its
    nearest existing ancestor must be a writable folder).
    """
    p = _path(path, field)
    if folder:
        if p.exists() and not p.is_dir():
            raise InputError(field, str(p), "must be a directory (it exists as a file)")
        probe = p
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise InputError(field, str(p), f"cannot be created: {probe} is not a folder")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise InputError(field, str(p), f"cannot be written: {probe} is not writable")
        return p
    if p.is_dir():
        raise InputError(field, str(p), "is a folder, not a file")
    parent = p.parent
    if not parent.is_dir():
        raise InputError(field, str(p), f"cannot be written: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(field, str(p), f"cannot be written: folder {parent} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(field, str(p), "cannot be written: permission denied")
    return p


@contextlib.contextmanager
def atomic_open(path: Path | str, field: str, mode: str = "w",
                **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    On any error (disk full, Ctrl-C, an exception in the body) the temporary file is removed
    and ``path`` is left as it was. ``OSError`` becomes :class:`InputError` naming the path.
    """
    p = check_writable(path, field)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise InputError(field, str(p), f"cannot be written: {_reason(exc)}") from None
    try:
        try:
            with os.fdopen(fd, mode, **kwargs) as stream:
                yield stream
                stream.flush()
                os.fsync(stream.fileno())
            _keep_mode(p, tmp)
            os.replace(tmp, p)
        except OSError as exc:
            raise InputError(field, str(p), f"cannot be written: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _keep_mode(p: Path, tmp: str) -> None:
    """A replaced file keeps its permissions; a new one gets the usual 0o666 & ~umask."""
    try:
        mode = p.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)


def write_text(path: Path | str, text: str, field: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_open(path, field, "w", encoding="utf-8", newline="") as stream:
        stream.write(text)
    return Path(path)


def write_bytes(path: Path | str, data: bytes, field: str) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, field, "wb") as stream:
        stream.write(data)
    return Path(path)
