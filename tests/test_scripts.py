"""Every script under benchmarks/ answers --help and bad flags before importing torch, with
one line and exit code 2 for bad flags; perf.py end to end on a few iterations."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks"

# Runs a script as __main__ (its folder first on sys.path, as `python script.py` has it) and
# reports its exit code and whether torch got imported.
_PROBE = ("import os, runpy, sys\nsys.argv = sys.argv[1:]\n"
          "sys.path.insert(0, os.path.dirname(sys.argv[0]))\ncode = 0\n"
          "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
          "except SystemExit as exc:\n    code = exc.code\n"
          "print('EXIT', code, 'torch' in sys.modules)\n")


def probe(script: str, *args: str) -> tuple[int, bool, str]:
    """(exit code, torch imported?, stderr) of ``benchmarks/<script>.py args``."""
    done = subprocess.run([sys.executable, "-c", _PROBE, str(SCRIPTS / f"{script}.py"), *args],
                          capture_output=True, text=True, timeout=120, check=False)
    _, code, imported = done.stdout.strip().splitlines()[-1].split()
    return int(code), imported == "True", done.stderr


@pytest.mark.parametrize("script, bad", [
    ("run", ["--device", "gpu"]),
    ("make_tables", ["--no-such-flag"]),
    ("perf", ["--iterations", "0"]),
    ("perf", ["--out", str(SCRIPTS)]),  # a folder, not a file: refused before timing anything
    ("representation", ["--r", "-1"]),
])
def test_help_and_bad_flags_answer_before_torch_is_imported(script, bad):
    assert probe(script, "--help")[:2] == (0, False)
    code, imported, stderr = probe(script, *bad)
    assert (code, imported) == (2, False)
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith(f"{script}.py: error:")


@pytest.mark.slow
def test_perf_times_every_case_and_prints_the_ratios(cli, tmp_path):
    report = tmp_path / "perf.txt"
    done = cli("perf", "--iterations", "3", "--repeats", "1", "--threads", "1",
               "--scoring-images", "10", "--device", "cpu", "--out", str(report))
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("summary (median of the repeats):")[1]
    assert summary.count("ms/iteration") == 5 and summary.count("images x samples/s") == 2
    for ratio in ("(b) / (a)", "(c) / (b)", "(c') / (b)", "(b, r=0.3) / (b, r=0)"):
        assert ratio in summary
    assert "target >= 10" not in summary  # no target the project does not hold
    rates = re.findall(r"GFLOP/s = +([\d.]+)% of \((\d+)x", summary)
    assert [shape for _, shape in rates] == ["256", "6400", "102400"]
    assert all(0 < float(share) for share, _ in rates)
    written = report.read_text()
    assert written.startswith("command: python benchmarks/perf.py --iterations 3 ")
    assert "commit: " in written and "repeat 1: (a) plain PyTorch loop" in written
    last_line = next(x for x in reversed(summary.splitlines()) if "GFLOP/s" in x)
    assert written.rstrip().endswith(last_line) and f"wrote {report}" in done.stdout


def test_perf_ratios_are_medians_of_per_repeat_ratios():
    spec = importlib.util.spec_from_file_location("benchmarks_perf_summary", SCRIPTS / "perf.py")
    perf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf)
    samples = {perf.PLAIN: [10.0, 20.0], perf.OURS: [11.0, 20.0],
               perf.ours_at(0.3): [11.0, 30.0], perf.AVALANCHE: [22.0, 40.0],
               perf.AVALANCHE_AS_USED: [33.0, 40.0]}
    ratios = {m[1].strip(): (float(m[2]), float(m[3])) for m in re.finditer(
        r"^(.+?) = +([\d.]+) +\( *([\d.]+)\)", perf.summary(samples, "cpu", 0.3),
        re.MULTILINE)}
    # Per repeat 1.1 and 1.0 (median 1.05); medians 15.5 / 15 = 1.033.
    assert ratios["(b) / (a)"] == (1.05, 1.033)
    assert ratios["(b, r=0.3) / (b, r=0)"] == (1.25, 1.323)
    assert ratios["(c') / (b)"] == (2.5, 2.355)
