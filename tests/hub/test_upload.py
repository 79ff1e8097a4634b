"""hub/upload.py in-process against the fake Hub: branches, private repos, no-op re-pushes, stale shard cleanup."""

import pytest
from huggingface_hub import constants

from hub.push_model import STALE_WEIGHT_PATTERNS
from hub.upload import upload_folder
from tests.hub.fake_hub import FakeHub


TOKEN = "hf_UploadTestToken00112233445566778899"


@pytest.fixture
def hub(monkeypatch):
    with FakeHub(TOKEN) as hub:
        # huggingface_hub reads these at import; the test session imported it offline.
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield hub


def _folder(path, files: dict[str, bytes]):
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(content)
    return path


def test_branch_push_leaves_main_alone_and_repeats_are_no_ops(hub, tmp_path):
    folder = _folder(tmp_path / "v1", {"config.json": b"{}", "sub/notes.txt": b"hello"})
    first = upload_folder(folder, "tester/private", private=True, revision="dev", commit_message="dev push")
    again = upload_folder(folder, "tester/private", private=True, revision="dev", commit_message="dev push")
    repo = hub.repo("tester/private")
    assert repo.private and first.startswith("Pushed model tester/private@dev") and again.startswith("No changes")
    assert [c.message for c in repo.branches["dev"]] == ["initial commit", "dev push"]
    assert [c.message for c in repo.branches["main"]] == ["initial commit"]
    assert repo.branches["dev"][-1].files == {"config.json": b"{}", "sub/notes.txt": b"hello"}


def test_a_new_push_removes_weight_files_the_folder_no_longer_has(hub, tmp_path):
    sharded = {
        "model-00001-of-00002.safetensors": b"a" * 64,
        "model-00002-of-00002.safetensors": b"b" * 64,
        "model.safetensors.index.json": b"{}",
        "notes.md": b"kept",
    }
    upload_folder(_folder(tmp_path / "v1", sharded), "tester/m", commit_message="v1")
    upload_folder(
        _folder(tmp_path / "v2", {"model.safetensors": b"c" * 64}),
        "tester/m",
        commit_message="v2",
        delete_patterns=STALE_WEIGHT_PATTERNS,
    )
    assert set(hub.commits("tester/m")[-1].files) == {"model.safetensors", "notes.md"}


def test_a_failed_push_exits_with_one_line_that_hides_the_token(hub, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    def echoing_failure(self, *args, **kwargs):
        raise OSError(f"proxy refused the request (Authorization: Bearer {TOKEN}, token={TOKEN})")

    monkeypatch.setattr(HfApi, "upload_folder", echoing_failure)
    folder = _folder(tmp_path / "v1", {"config.json": b"{}"})
    with pytest.raises(SystemExit) as exit_info:
        upload_folder(folder, "tester/repo", commit_message="push")
    message = str(exit_info.value.code)
    assert message.startswith("error: pushing to model tester/repo@main failed: OSError: proxy refused")
    assert TOKEN not in message and message.count("***") == 2
    assert exit_info.value.__cause__ is None and exit_info.value.__suppress_context__
