"""What the command-line scripts share: one-line errors, and importing users' methods.

Every script answers bad input with one line on stderr and exit code 2, no traceback, and
checks it before importing torch and Avalanche, so ``--help`` and flag errors come at once.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import os
import re
import signal
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from cl_binvae.suite.registry import METHODS


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit code 2, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, as Ctrl-C raises KeyboardInterrupt."""


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the body runs, SIGTERM raises ``Terminated``: a command ends on it as on
    Ctrl-C, cleaning up and saying so in one line, instead of dying mid-write."""
    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fail(prog: str, error: BaseException | str) -> int:
    """Print ``error`` as one line, ``<prog>: error: ...``, on stderr; return exit code 2."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
    return 2


def path_argument(value: str) -> str:
    """argparse's ``type`` for a file or folder named on the command line: not empty (which
    would mean the current folder) and UTF-8 (a name that is not cannot be written into a
    run's record or a table)."""
    if not value:
        raise argparse.ArgumentTypeError("must name a file or folder, not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise argparse.ArgumentTypeError(f"{shown} is not a UTF-8 name; rename it") from None
    return value


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: str) -> str:
    """``name`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (no torch needed), else
    ``ValueError``."""
    if not _DEVICE.fullmatch(name):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def resolve_device(name: str) -> str:
    """The torch device ``name`` means here (``auto``: CUDA when present); ``ValueError`` for
    CUDA on a machine without it, or a GPU index it does not have."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    index = int(name.partition(":")[2] or 0)
    if name.startswith("cuda") and index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} GPUs")
    return name


def quiet_dependency_warnings() -> None:
    """Hide Avalanche's and qpsolvers' warnings (deprecations, optional backends) from here on:
    they force their own filters, so drop them at display time; other warnings still show."""
    show = warnings.showwarning
    if getattr(show, "quiets_dependencies", False):  # in place already (tests call main often)
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not any(f"{os.sep}{pkg}{os.sep}" in filename for pkg in ("avalanche", "qpsolvers")):
            show(message, category, filename, lineno, file, line)

    showwarning.quiets_dependencies = True
    warnings.showwarning = showwarning


def check_writable(folder: Path, what: str) -> None:
    """``OSError`` naming ``what`` unless ``folder`` exists or can be made, and takes files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise OSError(f"cannot write to {what} {folder}: {exc.strerror or exc}") from None


def import_methods(specs: Sequence[str]) -> list[str]:
    """Import each file (``path/to/file.py``) or module (``package.module``) in ``specs`` so
    that it registers its methods; return the names it registered.

    A spec imported before in this process is skipped (Ray workers run many tasks). Raises
    ``ValueError`` (and registers nothing) for a missing file or module, one that raises,
    exits or prints to stdout while importing, or one that registers no method.
    """
    added: list[str] = []
    for spec in specs:
        name, path = _module_name(spec)
        if name in sys.modules:
            continue
        before = set(METHODS)
        try:
            printed = _run_module(spec, name, path)
            new = [m for m in METHODS if m not in before]
            if printed:
                raise ValueError(f"--import {spec} printed to stdout ({printed!r}); a methods "
                                 "file registers methods and prints nothing")
            if not new:
                raise ValueError(f"--import {spec} registered no method; decorate a function "
                                 "that builds a strategy with @cl_binvae.register_method(\"name\")")
        except ValueError:
            sys.modules.pop(name, None)  # as it was: nothing of a refused file stays
            for method in set(METHODS) - before:
                del METHODS[method]
            raise
        added += new
    return added


def _run_module(spec: str, name: str, path: Path | None) -> str:
    """Import module ``name`` (from ``path``, a file, if given); return the first line it
    printed to stdout. ``ValueError`` for one that cannot be imported, raises or exits."""
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            if path is None:
                importlib.import_module(name)
            else:
                loader_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[name] = module
                loader_spec.loader.exec_module(module)
    except ModuleNotFoundError as err:
        if path is None and err.name == name.split(".")[0]:
            raise ValueError(f"--import {spec}: no such module (or give a .py file)") from None
        raise ValueError(f"--import {spec} failed: {err}") from None
    except SystemExit as err:  # a script's sys.exit() would end the driver having run nothing
        raise ValueError(f"--import {spec} called sys.exit({err.code!r}); a methods file "
                         "registers methods and does not exit") from None
    except Exception as err:  # noqa: BLE001 - whatever the user's file raises
        raise ValueError(f"--import {spec} raised {type(err).__name__}: {err}") from None
    return next(iter(stdout.getvalue().strip().splitlines()), "")


def resolve_import(spec: str) -> str:
    """``spec`` as it imports from any working directory: a file's absolute path, or the
    module name unchanged. ``ValueError`` for a missing file or a path that is not ``.py``."""
    if not (spec.endswith(".py") or "/" in spec or "\\" in spec):
        return spec
    path = Path(spec).expanduser().resolve()
    if path.suffix != ".py":
        raise ValueError(f"--import {spec}: give a .py file or a module name")
    if not path.is_file():
        raise ValueError(f"--import {spec}: no such file")
    return str(path)


def _module_name(spec: str) -> tuple[str, Path | None]:
    """The module name to import ``spec`` under, and its file (None for a module name)."""
    resolved = resolve_import(spec)
    if not resolved.endswith(".py"):
        return spec, None
    # Named after its absolute path: the same file imports once, two files never clash.
    return "cl_binvae_user_" + "".join(c if c.isalnum() else "_" for c in resolved), \
        Path(resolved)
