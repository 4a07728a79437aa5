"""Atomic file writes: readers see either the old file (or none) or the complete new one.

A run killed mid-write must never leave a file that looks finished; every writer in the suite
goes through ``atomic_path``. Its temporary files carry a name no user would choose
(``.<name>.cl_binvae-tmp-<8 random characters><suffix of name>``), so that the suite, which
removes only files it wrote itself, can tell a killed write's leftover from a user's file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)  # reading the umask means setting it: put it back at once
TEMP_MARK = ".cl_binvae-tmp-"
_RANDOM = "[a-z0-9_]{8}"  # mkstemp's random part: 8 of these characters, no more, no less
_TEMP = re.compile(rf"^\.(?P<target>.+){re.escape(TEMP_MARK)}{_RANDOM}(?P<suffix>\.[^.]+)?$")
# How atomic_path named its files before the mark: only ever matched for a target the caller
# says the suite writes there (``earlier``), as a user's ".notes-prelim01" must survive.
_EARLIER = re.compile(rf"^\.(?P<stem>[^.]+)\.tmp-{_RANDOM}(?P<suffix>\.[^.]+)?$")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the body succeeds.

    The temporary name keeps the suffix, so writers that infer the format from it still work;
    a process killed mid-write leaves it behind, for ``remove_orphans`` to clear. An
    ``OSError`` that names no file (a full disk, say) is raised naming ``path``.
    """
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise _naming(err, path) from None
    finally:
        tmp.unlink(missing_ok=True)


def temporary_beside(path: str | os.PathLike) -> Path:
    """A new empty file in ``path``'s folder, named as the suite's temporary files are
    (``is_temporary``), with the usual permissions; the caller moves or removes it."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", suffix=path.suffix,
                                   dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    except OSError as err:
        raise _naming(err, path) from None
    return Path(tmp)


def is_temporary(name: str, earlier: Callable[[str], bool] = lambda name: False) -> bool:
    """Whether ``name`` is a temporary file of ``atomic_path``: its mark, mkstemp's random
    part, and the suffix of the file it was to become; or, named as before the mark, a
    temporary of a file that ``earlier(file name)`` says the suite writes there."""
    match = _TEMP.match(name)
    if match is not None:
        return (match["suffix"] or "") == Path(match["target"]).suffix
    match = _EARLIER.match(name)
    return match is not None and earlier(match["stem"] + (match["suffix"] or ""))


def remove_orphans(folder: str | os.PathLike,
                   earlier: Callable[[str], bool] = lambda name: False) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in ``folder``
    (``is_temporary``), and nothing else; call it only while no other process writes there.
    Returns what was removed."""
    orphans = [p for p in Path(folder).iterdir()
               if is_temporary(p.name, earlier) and p.is_file() and not p.is_symlink()]
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


class NoSpace(OSError):
    """Not enough free disk space for a write the suite is about to make."""

    def __str__(self) -> str:
        return self.strerror


def check_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """``NoSpace`` naming ``what``, ``folder`` and the bytes it needs, unless ``folder`` has
    ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise NoSpace(errno.ENOSPC, f"{what} needs {needed:,} bytes free in {folder}, only "
                                    f"{free:,} are; free some space and rerun")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically; NaN is refused, not written."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` as it is, when it names a file; else the same error naming ``path``."""
    if err.filename is not None or err.errno is None:
        return err
    return OSError(err.errno, err.strerror or str(err), str(path))
