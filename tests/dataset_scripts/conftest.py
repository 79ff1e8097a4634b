"""Shared fixtures: shapes-world images, a running offline teacher, and a way to run the synthesis CLI in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes.tiny import shapes_world
from recipes.tiny.offline_teacher import OfflineTeacher
from tests.dataset_scripts.helpers_synthesis import API_KEY


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shapes")
    shapes_world.write_scenes(folder, 24, seed=7, size=112)
    return folder


@pytest.fixture
def teacher():
    with OfflineTeacher(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def synth(monkeypatch: pytest.MonkeyPatch, teacher: OfflineTeacher, capsys: pytest.CaptureFixture):
    """Run synthesize.main in-process against the teacher; returns (exit code, summary dict or None, output dir)."""
    from dataset_scripts import synthesize

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)

    def run(*args: str, output: Path, base_url: str | None = None, check: int | None = 0):
        argv = ["--base-url", base_url or teacher.base_url, "--model", "teacher-x", "--output", str(output)]
        argv += ["--quiet", "--timeout", "5", "--backoff-base", "0.02", *args]
        code = synthesize.main(argv)
        summaries = sorted(output.glob("summary-*.json")) if output.exists() else []
        summary = json.loads(summaries[-1].read_text()) if summaries else None
        if check is not None:
            assert code == check, (code, capsys.readouterr())
        return code, summary

    return run
