"""A set of files replaced together: written first into a hidden folder beside them, then
moved into place at once with Ctrl-C and SIGTERM held off, so that readers see the previous
set whole or the new one whole, never half of each, and an interrupted set leaves nothing.

    with staged(out) as stage:
        write_tables(runs, stage.folder)  # out's files as they will be, under stage.folder
        stage.put(readme, text)  # a file elsewhere, replaced with them
        stage.remove(out / "old.csv")  # a file that goes with them
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cl_binvae.suite.atomic import TEMP_MARK, is_temporary, temporary_beside

_HELD = {signal.SIGINT, signal.SIGTERM}


class Staging:
    """The files of one set: those under ``folder`` go to the same place under ``out``."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        # A name the suite's own temporary files have: a killed set's folder is removed next
        # time (``remove_leftovers``), and no user folder ever is.
        self.folder = Path(tempfile.mkdtemp(prefix=f".staging{TEMP_MARK}", dir=out))
        self.committed = False
        self._elsewhere: list[tuple[Path, Path]] = []  # (temporary file, target)
        self._removals: list[Path] = []

    def read_path(self, target: Path) -> Path:
        """Where ``target`` (a file under ``out``) can be read as the set will have it: its
        staged file, if the set has one."""
        try:
            staged = self.folder / target.resolve().relative_to(self.out.resolve())
        except ValueError:  # not under out
            return target
        return staged if staged.is_file() else target

    def put(self, target: Path, text: str) -> None:
        """Replace ``target``, a file anywhere (a README), with ``text`` (UTF-8) along with
        the set; staged beside it, so that the move stays on its file system."""
        staged = temporary_beside(target)
        self._elsewhere.append((staged, target))
        staged.write_text(text, encoding="utf-8")

    def remove(self, target: Path) -> None:
        """Delete ``target`` along with the set."""
        self._removals.append(target)

    def commit(self) -> None:
        """Move every file into place, then delete the removals; signals wait meanwhile."""
        moves = [(f, self.out / f.relative_to(self.folder))
                 for f in sorted(self.folder.rglob("*")) if f.is_file()] + self._elsewhere
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        try:
            for staged, target in moves:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
            for target in self._removals:
                target.unlink(missing_ok=True)
            self.committed = True
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a signal held arrives now

    def discard(self) -> None:
        """Remove everything staged; the files in place stay as they were."""
        shutil.rmtree(self.folder, ignore_errors=True)
        for staged, _ in self._elsewhere:
            staged.unlink(missing_ok=True)


@contextmanager
def staged(out: Path) -> Iterator[Staging]:
    """A ``Staging`` of ``out``, committed when the body succeeds, discarded whatever ends
    it otherwise (Ctrl-C included)."""
    stage = Staging(out)
    try:
        yield stage
        stage.commit()
    finally:
        stage.discard()


def remove_leftovers(out: Path) -> list[Path]:
    """Remove the staging folders of sets killed mid-way in ``out`` (by kill -9: anything
    else discards its own); call it only while no other process writes there."""
    leftovers = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()
                 and p.name.startswith(".staging") and is_temporary(p.name)]
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
    return leftovers
