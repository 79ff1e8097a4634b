"""The scale bench's one runner: a stage's CLI in its own process, measured (wall, CPU, peak RSS), and disk written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


# Started by the bench, this launcher starts the stage and reports the stage's rusage. The kernel adds a process's
# memory before exec to the peak RSS that wait4() reports (with vfork, as subprocess uses, that is the parent's
# peak): measured straight from the bench, a stage's peak was at least the bench's own, which at 10^6 rows (the
# simulated release it writes) is 2.2 GB. From this small launcher (python -S) the stage inherits ~10 MB.
LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024], report)
"""


def measure(command: list[str], **env: str) -> dict:
    """Run `command` in its own process: wall seconds, CPU seconds (user + sys) and peak RSS bytes.

    Its output goes to files, not pipes, so a chatty stage (progress bars) never blocks while the launcher waits."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "rusage.json"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, str(report), *command],
            cwd=REPO,
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            check=True,
        )
        wall = time.perf_counter() - start
        returncode, cpu, rss = json.loads(report.read_text())
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {returncode}:\n{stderr[-3000:]}")
    return {"wall": wall, "cpu": cpu, "rss": rss, "stdout": stdout}


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
