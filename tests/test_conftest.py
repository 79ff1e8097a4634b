"""The test-wide environment cleans up after itself."""

import subprocess
import sys
from pathlib import Path

from tests.dataset_scripts.helpers_synthesis import REPO


def test_the_session_hf_home_is_removed_when_pytest_exits(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text("import os\n\n\ndef test_home():\n    print('HF_HOME=' + os.environ['HF_HOME'])\n")
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    command.append(str(probe))
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    home = Path(next(line for line in result.stdout.splitlines() if "HF_HOME=" in line).split("HF_HOME=", 1)[1])
    assert home.name.startswith("allava-hf-home-") and not home.exists()
