"""Atomic file writes: readers see either the old file (or none) or the complete new one.

A run killed mid-write must never leave a file that looks finished; every writer in the suite
goes through ``atomic_path``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)  # reading the umask means setting it: put it back at once
_TEMP_MARK = ".tmp-"
# ".<stem>.tmp-<random><suffix>" as atomic_path names them (mkstemp's random part), or
# ".<stem>-<random><suffix>" as it named them before.
_ORPHAN = re.compile(r"^\.(.+\.tmp-[A-Za-z0-9_]+|[A-Za-z0-9_]+-[A-Za-z0-9_]{8})(\.[A-Za-z0-9]+)?$")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the body succeeds.

    The temporary name keeps the suffix, so writers that infer the format from it still work;
    a process killed mid-write leaves it behind, for ``remove_orphans`` to clear.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}{_TEMP_MARK}", suffix=path.suffix,
                               dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def remove_orphans(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in ``folder``; call it
    only while no other process writes there. Returns what was removed."""
    orphans = [p for p in Path(folder).iterdir() if p.is_file() and _ORPHAN.match(p.name)]
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically; NaN is refused, not written."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
