"""Run Python in a fresh process (the way users load what the hub tools write) and fail with its output."""

import os
import subprocess
import sys
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[2]


def run_python(args: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT):
    """`python *args` with the test environment plus `env`; returns the finished process, raising on failure."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": "", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise AssertionError(f"python {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result
