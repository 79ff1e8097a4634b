"""Upload a finished folder to the Hub: the one place for the token check, repo and branch creation, and telling a
re-push that changed nothing apart from a new commit. Used for models (hub/push_model.py) and dataset folders."""

from pathlib import Path

from toolkit.cli import check_repo_id
from toolkit.scrub import describe_error


def require_token() -> str:
    """Stop before any work or request when no token is configured (callers check early, before long builds)."""
    from huggingface_hub import get_token

    token = get_token()
    if token is None:
        raise SystemExit("No Hugging Face token found: set HF_TOKEN or run `hf auth login` (never pass it as a flag).")
    return token


def upload_folder(
    folder: Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool = False,
    space_sdk: str | None = None,
    revision: str | None = None,
    commit_message: str,
    delete_patterns: list[str] | None = None,
) -> str:
    """Create the repo (and branch) if needed and upload `folder` as one commit; returns a line saying what happened.

    The token comes from `HF_TOKEN` or `hf auth login` and is never printed: a failure exits with one line scrubbed
    of it (and of anything shaped like a token). Files identical to the remote ones are
    skipped by huggingface_hub, so pushing the same folder twice makes no commit. Remote files matching
    `delete_patterns` that the folder no longer has are deleted in the same commit. A Space needs `space_sdk`.
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id, "repo id")
    token = require_token()
    where = f"{repo_type} {repo_id}@{revision or 'main'}"
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, space_sdk=space_sdk, exist_ok=True)
        if revision:
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
        before = api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha
        commit = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            repo_type=repo_type,
            revision=revision,
            commit_message=commit_message,
            delete_patterns=delete_patterns,
        )
    except Exception as error:  # noqa: BLE001 (any Hub failure ends the push with one scrubbed line, no traceback)
        raise SystemExit(f"error: pushing to {where} failed: {describe_error(error, (token,))}") from None
    if commit.oid == before:
        return f"No changes: {where} already holds this exact folder (commit {before})."
    return f"Pushed {where}: {commit.commit_url}"
