"""Versioned teacher prompts: which templates each mode/strategy sends, how they are filled, and their hash.

Prompt sets are folders of text files (`prompts/v1/*.txt`). Each template starts with a `Prompt id:` line naming it
and its version; the version and a hash of the exact text sent go into every record, so data made with different
prompts is never mixed up, and a teacher (the offline one, or a human reading logs) can tell the requests apart.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path


PROMPTS_ROOT = Path(__file__).resolve().parent / "prompts"
MARKER_RE = re.compile(r"^Prompt id: allava/(?P<name>[a-z_]+)/(?P<version>[\w.-]+)[ \t]*$", re.MULTILINE)
MODES = ("caption-qa", "vflan", "text")
STRATEGIES = ("one-call", "two-call", "direct")
# Templates sent, in order, for each (mode, strategy); each reply is parsed with the template's section kind.
PLANS: dict[tuple[str, str], tuple[str, ...]] = {
    ("caption-qa", "one-call"): ("caption_qa",),
    ("caption-qa", "two-call"): ("caption", "qa_from_caption"),
    ("caption-qa", "direct"): ("qa_direct",),
    ("vflan", "one-call"): ("vflan",),
    ("text", "one-call"): ("text",),
}
PLACEHOLDERS = {"qa_from_caption": ("description",), "vflan": ("instruction",)}
TEMPLATE_NAMES = ("caption_qa", "caption", "qa_from_caption", "qa_direct", "vflan", "text")
CAPTION_REQUESTS_FILE = "caption_requests.txt"


class PromptError(ValueError):
    """A prompt folder is incomplete or inconsistent."""


@dataclass(frozen=True)
class PromptSet:
    """All templates of one version, plus the caption requests paired with descriptions in caption samples."""

    version: str
    templates: dict[str, str]
    caption_requests: tuple[str, ...]

    def plan(self, mode: str, strategy: str) -> tuple[str, ...]:
        if (mode, strategy) not in PLANS:
            raise PromptError(f"mode {mode!r} has no strategy {strategy!r}; caption-qa takes {STRATEGIES}")
        return PLANS[(mode, strategy)]

    def hash_for(self, mode: str, strategy: str) -> str:
        """sha256 (16 hex) over the templates a mode/strategy sends, plus the caption requests it pairs with."""
        digest = hashlib.sha256()
        names = self.plan(mode, strategy)
        for name in names:
            digest.update(f"{name}\0{self.templates[name]}\0".encode())
        if produces_caption(mode, strategy):
            digest.update("\n".join(self.caption_requests).encode())
        return digest.hexdigest()[:16]

    def texts_for(self, mode: str, strategy: str) -> dict[str, str]:
        """The files behind `hash_for`, for documentation (summary, dataset card)."""
        texts = {name: self.templates[name] for name in self.plan(mode, strategy)}
        if produces_caption(mode, strategy):
            texts["caption_requests"] = "\n".join(self.caption_requests)
        return texts

    def caption_request(self, key: str) -> str:
        """The caption request paired with a record: fixed by its key, spread evenly over the list."""
        return self.caption_requests[int(key[:12], 16) % len(self.caption_requests)]


def produces_caption(mode: str, strategy: str) -> bool:
    return mode == "vflan" or (mode == "caption-qa" and strategy != "direct")


def load_prompt_set(version: str = "v1", directory: str | Path | None = None) -> PromptSet:
    """Read `prompts/<version>/` (or `directory`, whose name is then the version) and check every file."""
    folder = Path(directory) if directory is not None else PROMPTS_ROOT / version
    if directory is not None:
        version = folder.name
    if not folder.is_dir():
        available = sorted(p.name for p in PROMPTS_ROOT.iterdir() if p.is_dir())
        raise PromptError(f"prompt folder {folder} not found (shipped versions: {available})")
    templates = {}
    for name in TEMPLATE_NAMES:
        path = folder / f"{name}.txt"
        if not path.is_file():
            raise PromptError(f"prompt set {version!r} lacks {path.name}")
        text = path.read_text(encoding="utf-8").strip() + "\n"
        found = marker(text)
        if found != (name, version):
            raise PromptError(f"{path}: first line must be 'Prompt id: allava/{name}/{version}' (found {found})")
        for placeholder in PLACEHOLDERS.get(name, ()):
            if "{{" + placeholder + "}}" not in text:
                raise PromptError(f"{path}: missing the {{{{{placeholder}}}}} placeholder")
        templates[name] = text
    requests_path = folder / CAPTION_REQUESTS_FILE
    if not requests_path.is_file():
        raise PromptError(f"prompt set {version!r} lacks {CAPTION_REQUESTS_FILE}")
    requests = tuple(line.strip() for line in requests_path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not requests:
        raise PromptError(f"{requests_path} is empty")
    return PromptSet(version=version, templates=templates, caption_requests=requests)


def fill(template: str, **values: str) -> str:
    """Substitute `{{name}}` placeholders (plain replacement: teacher text may contain braces)."""
    for name, value in values.items():
        template = template.replace("{{" + name + "}}", value.strip())
    return template


def marker(text: str) -> tuple[str, str] | None:
    """(template name, version) of the first `Prompt id:` line in a request text, if any."""
    match = MARKER_RE.search(text)
    return (match["name"], match["version"]) if match else None
