"""One teacher request, done properly: rate budgets, our own retry loop, and errors that never leak the key.

The `openai` client's built-in retries are off (`max_retries=0`) so that every retry is counted, backs off with
jitter, honours `Retry-After` for all workers at once, and so that 400/401/403/404 stop the run instead of being
retried into a wall.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx2
import openai
from openai.types.chat import ChatCompletion

from dataset_scripts.limits import TokenBucket, backoff_delay, parse_retry_after
from modeling_allava.safety import scrub


CONNECTIONS_PER_POOL = 16
FATAL_STATUSES = {400: "bad request", 401: "authentication failed", 403: "permission denied", 404: "not found"}


class FatalAPIError(RuntimeError):
    """The teacher refused the request in a way retrying cannot fix; the run stops."""


class TransientAPIError(RuntimeError):
    """Retries were exhausted on errors that might pass (rate limits, 5xx, timeouts, dropped connections)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


@dataclass
class RetryStats:
    retries: Counter = field(default_factory=Counter)  # kind -> retries made
    backoff_seconds: float = 0.0
    retry_after_honoured: int = 0


class TeacherClient:
    """Chat completions against any OpenAI-compatible endpoint, within RPM/TPM budgets."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        sampling: dict,
        timeout: float,
        max_retries: int,
        concurrency: int,
        backoff_base: float = 0.5,
        rpm: TokenBucket | None = None,
        tpm: TokenBucket | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.model = model
        self.sampling = dict(sampling)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.rpm = rpm
        self.tpm = tpm
        self.rng = rng or random.Random()
        self.stats = RetryStats()
        self._secrets = (api_key,)
        self._paused_until = 0.0
        # The HTTP pool scans every connection for each request (cost grows with concurrency squared), so big
        # concurrency is spread over several small pools.
        pools = math.ceil(max(concurrency, 1) / CONNECTIONS_PER_POOL)
        per_pool = math.ceil(max(concurrency, 1) / pools)
        limits = httpx2.Limits(max_connections=per_pool + 4, max_keepalive_connections=per_pool)
        ssl_context = httpx2.create_ssl_context()  # loading CA certificates once, not per pool
        self.clients = [
            openai.AsyncOpenAI(
                base_url=base_url,
                api_key=api_key,
                max_retries=0,
                timeout=timeout,
                http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout, verify=ssl_context),
            )
            for _ in range(pools)
        ]
        self._next_client = itertools.cycle(self.clients)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()

    def _classify(self, error: Exception) -> tuple[str, float | None]:
        """(retry kind, server-requested delay) for a retriable error; raises FatalAPIError otherwise."""
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            if status in FATAL_STATUSES or status == 422:
                detail = scrub(str(getattr(error, "message", error)), self._secrets)
                label = FATAL_STATUSES.get(status, "unprocessable request")
                hint = " (check the key in the environment variable)" if status in (401, 403) else ""
                raise FatalAPIError(f"teacher answered {status} {label}{hint}: {detail}") from None
            retry_after = parse_retry_after(dict(error.response.headers))
            return ("rate_limit" if status == 429 else f"http_{status}"), retry_after
        if isinstance(error, openai.APITimeoutError):
            return "timeout", None
        if isinstance(error, openai.APIConnectionError):
            return "connection", None
        if isinstance(error, openai.APIResponseValidationError):
            return "invalid_response", None
        raise error

    async def complete(self, messages: list[dict], estimated_tokens: int) -> Reply:
        """Send one chat completion, retrying transient failures up to `max_retries` times."""
        reserve = estimated_tokens + int(self.sampling.get("max_tokens") or 0)
        attempt = 0
        while True:
            hold = self._paused_until - time.monotonic()
            if hold > 0:  # a Retry-After seen by any worker holds every worker
                await asyncio.sleep(hold)
            if self.rpm is not None:
                await self.rpm.acquire(1)
            if self.tpm is not None:
                await self.tpm.acquire(reserve)
            try:
                # The low-level post skips the SDK's per-request walk over the params (milliseconds per image
                # request); the body is already plain JSON, and errors, timeouts and parsing are the SDK's own.
                response = await next(self._next_client).post(
                    "/chat/completions",
                    cast_to=ChatCompletion,
                    body={"model": self.model, "messages": messages, **self.sampling},
                )
            except (openai.APIError, httpx2.HTTPError) as error:
                if self.tpm is not None:
                    self.tpm.refund(reserve)
                kind, retry_after = self._classify(error)
                message = scrub(f"{type(error).__name__}: {error}", self._secrets)
            else:
                usage = response.usage
                prompt_tokens = usage.prompt_tokens if usage else estimated_tokens
                completion_tokens = usage.completion_tokens if usage else 0
                if self.tpm is not None:
                    self.tpm.refund(max(0, reserve - prompt_tokens - completion_tokens))
                choice = response.choices[0] if response.choices else None
                text = (choice.message.content or "") if choice else ""
                return Reply(text, prompt_tokens, completion_tokens, choice.finish_reason if choice else None)
            if attempt == self.max_retries:
                raise TransientAPIError(kind, f"gave up after {attempt + 1} attempts; last error {message}")
            self.stats.retries[kind] += 1
            delay = backoff_delay(attempt, base=self.backoff_base, rng=self.rng)
            if retry_after is not None:
                self.stats.retry_after_honoured += 1
                delay = retry_after + delay * 0.1  # what the server asked, plus a little jitter to de-synchronise
                self._paused_until = max(self._paused_until, time.monotonic() + retry_after)
            self.stats.backoff_seconds += delay
            attempt += 1
            await asyncio.sleep(delay)
