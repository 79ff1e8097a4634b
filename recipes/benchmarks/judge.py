"""An OpenAI-compatible judge for the GPT-scored benchmarks, with bounded retries and recorded failures.

HTTP errors are retried by the `openai` client itself (429/5xx, honouring Retry-After); a reply the benchmark cannot
parse is asked again up to `parse_retries` times. A sample that still has no verdict is recorded as a judge failure
(counted in results.json, re-judged on the next resume) instead of crashing a long run. Only a rejected key or model
(401/403/404) stops the run, since every later call would fail the same way. The API key is read from the
environment and never logged or stored: every error is scrubbed (toolkit.scrub) before it is recorded.
"""

import base64
import hashlib
import io
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import openai
from PIL import Image

from toolkit.scrub import describe_error, scrub

from .common import PROMPTS_DIR


@dataclass
class JudgeSettings:
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 1024
    parse_retries: int = 2
    http_retries: int = 3
    timeout: float = 120.0
    concurrency: int = 4


class JudgeConfigError(RuntimeError):
    """The judge refuses every call (bad key, no access, unknown model): stop instead of failing each sample."""


def load_prompt(name: str) -> tuple[str, str]:
    """A judge prompt template from prompts/ and the first 16 hex digits of its SHA-256 (stored with the score)."""
    text = (PROMPTS_DIR / name).read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def image_part(image: Image.Image, max_side: int = 1024) -> dict:
    """An OpenAI `image_url` content part holding the image as a PNG data URL."""
    image = image.copy()
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


class Judge:
    def __init__(self, settings: JudgeSettings):
        api_key = os.environ.get(settings.api_key_env)
        if not api_key:
            raise JudgeConfigError(f"The judge needs an API key in the environment variable ${settings.api_key_env}.")
        self.settings = settings
        self._secrets = (api_key,)
        self.client = openai.OpenAI(
            base_url=settings.base_url, api_key=api_key, max_retries=settings.http_retries, timeout=settings.timeout
        )
        self.asked, self.failed, self.last_error = 0, 0, None  # samples asked, left without a verdict, last reason

    def describe(self, prompt_hash: str) -> dict:
        """What results.json records about the judge (never the key or the endpoint's credentials)."""
        return {"model": self.settings.model, "temperature": self.settings.temperature, "prompt_hash": prompt_hash}

    def ask(self, messages: list[dict], parse: Callable[[str], tuple]) -> dict:
        """One verdict: {"parsed", "score", "reply", "attempts"} or {"error", "reply", "attempts"} on failure."""
        reply, error = None, None
        for attempt in range(1, self.settings.parse_retries + 2):
            try:
                response = self.client.chat.completions.create(
                    model=self.settings.model,
                    messages=messages,
                    temperature=self.settings.temperature,
                    max_tokens=self.settings.max_tokens,
                )
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as failure:
                # `from None`: the chained traceback would print the endpoint's raw message (and an echoed key).
                reason = describe_error(failure, self._secrets)
                raise JudgeConfigError(f"The judge refused the request: {reason}.") from None
            except openai.APIError as failure:  # retries inside the client are used up
                return {"error": describe_error(failure, self._secrets), "reply": None, "attempts": attempt}
            reply = (response.choices[0].message.content or "") if response.choices else ""
            reply = scrub(reply, self._secrets)  # stored in the cache and samples/: an echoed key must not be
            try:
                parsed, score = parse(reply)
            except ValueError as failure:
                error = f"unparsable reply: {failure}"
                continue
            return {"parsed": parsed, "score": score, "reply": reply, "attempts": attempt}
        return {"error": error, "reply": reply, "attempts": self.settings.parse_retries + 1}

    def ask_many(self, requests: list[tuple[list[dict], Callable[[str], tuple]]]) -> list[dict]:
        """`ask` for many samples at once, `concurrency` calls in flight, results in request order."""
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            verdicts = list(pool.map(lambda request: self.ask(*request), requests))
        errors = [verdict["error"] for verdict in verdicts if verdict.get("error")]
        self.asked += len(verdicts)
        self.failed += len(errors)
        self.last_error = errors[-1] if errors else self.last_error
        return verdicts


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_VERDICT = re.compile(r"\[\[([ABC])\]\]")


def parse_score_pair(reply: str, low: float = 1.0, high: float = 10.0) -> tuple[float, float]:
    """Two scores on the reply's first non-empty line ('8 6', '8, 6', 'Scores: 8 and 6')."""
    lines = [line for line in reply.strip().splitlines() if line.strip()]
    numbers = [float(n) for n in _NUMBER.findall(lines[0])] if lines else []
    if len(numbers) < 2 or not all(low <= n <= high for n in numbers[:2]):
        raise ValueError(f"expected two scores in [{low:g}, {high:g}] on the first line, got {reply[:80]!r}")
    return numbers[0], numbers[1]


def parse_unit_score(reply: str) -> float:
    """The first number in the reply, which must lie in [0, 1]."""
    numbers = [float(n) for n in _NUMBER.findall(reply)]
    if not numbers or not 0.0 <= numbers[0] <= 1.0:
        raise ValueError(f"expected a score in [0, 1], got {reply[:80]!r}")
    return numbers[0]


def parse_verdict(reply: str) -> str:
    """The last '[[A]]' / '[[B]]' / '[[C]]' (tie) in the reply."""
    verdicts = _VERDICT.findall(reply)
    if not verdicts:
        raise ValueError(f"no [[A]] / [[B]] / [[C]] verdict in {reply[-80:]!r}")
    return verdicts[-1]


def model_is_first(sample_id: str) -> bool:
    """Whether the evaluated answer is shown first in a pairwise comparison: fixed per sample, half of them each
    way overall, so the judge's position bias cancels out instead of favouring one side."""
    return int(hashlib.sha256(sample_id.encode("utf-8")).hexdigest(), 16) % 2 == 0


def pairwise_score(verdict: str, model_first: bool) -> float:
    """1 for a win of the evaluated answer, 0.5 for a tie, 0 for a loss."""
    if verdict == "C":
        return 0.5
    return float((verdict == "A") == model_first)
