"""The scale bench's one runner: a stage's CLI in its own process, measured (wall, CPU, peak RSS), and disk written."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def measure(command: list[str], **env: str) -> dict:
    """Run `command` in its own process: wall seconds, CPU seconds (user + sys) and peak RSS bytes.

    Its output goes to files, not pipes, so a chatty stage (progress bars) never blocks while we wait4() for the
    rusage of that one child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=err, env={**os.environ, "PYTHONPATH": str(REPO), **env}
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{stderr[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024, "stdout": stdout}


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
