"""Files of a results directory are whole or absent: written beside, then renamed over the final name.

A full disk, a signal or a crash mid-write leaves neither a torn file under its final name nor a stray
temporary (the temporary is removed on any failure). A write the system refuses (ENOSPC, EACCES, EROFS,
...) becomes :class:`OutputError`: one line naming the file, printed by the CLI, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


class OutputError(OSError):
    """A result file could not be written; the message names it and the system's reason."""

    def __init__(self, path: Path, exc: OSError):
        self.path, self.reason = Path(path), exc.strerror or str(exc)
        super().__init__(exc.errno, f"cannot write {self.path}: {self.reason}")

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


def atomic_write(path: Path, write: Callable[[Path], None], *, mode: int = 0o644) -> Path:
    """Call ``write(tmp)`` on a fresh temporary file beside ``path`` (created with ``mode``), then rename it
    to ``path``. On any failure the temporary is removed and ``path`` keeps its previous content; an
    OSError of the system becomes :class:`OutputError`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(path, exc) from exc
        raise
    return path


def write_text(path: Path, text: str, *, mode: int = 0o644) -> Path:
    """``text`` (UTF-8) to ``path`` atomically, flushed to disk before the rename."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write, mode=mode)
