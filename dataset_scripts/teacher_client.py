"""One teacher request, done properly: rate budgets, our own retry loop, and errors that never leak the key.

The `openai` client's built-in retries are off (`max_retries=0`) so that every retry is counted, backs off with
jitter, honours `Retry-After` for all workers at once, and so that 400/401/403/404 stop the run instead of being
retried into a wall. `timeout` is a deadline for the whole request (a server trickling bytes cannot hold a worker),
and a 200 whose body is not a chat completion (HTML, not UTF-8, not JSON, far too large) is a retryable fault.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import httpx2
import openai

from dataset_scripts.endpoints import COOLDOWN_SECONDS, FAILURES_TO_EJECT, Endpoint, EndpointPool
from dataset_scripts.limits import BACKOFF_BASE, backoff_delay, parse_retry_after
from toolkit.scrub import scrub


FATAL_STATUSES = {400: "bad request", 401: "authentication failed", 403: "permission denied", 404: "not found"}


INVALID_RESPONSE = "invalid_response"
JSON_BYTES_PER_CHAR = 6  # the worst JSON escape (\uXXXX) of one character of the reply
ERROR_BODY_BYTES = 65_536  # read of an error answer's body, for its message


class FatalAPIError(RuntimeError):
    """The teacher refused the request in a way retrying cannot fix; the run stops."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, when the refusal was one


class TransientAPIError(RuntimeError):
    """Retries were exhausted on errors that might pass (rate limits, 5xx, timeouts, dropped connections)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class InvalidResponse(ValueError):
    """An HTTP 200 whose body is not a usable chat completion."""


class StatusError(RuntimeError):
    """A chat completion answered with an HTTP error status (the direct path's counterpart of the SDK's)."""

    def __init__(self, status_code: int, headers: dict[str, str], message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.headers = headers
        self.message = message


def error_message(body: bytes) -> str:
    """`error.message` of an OpenAI-style error body, else the start of the body as text."""
    try:
        detail = json.loads(body)["error"]["message"]
        if isinstance(detail, str):
            return detail
    except (ValueError, KeyError, TypeError):
        pass
    return body[:200].decode("utf-8", "replace").strip() or "(empty body)"


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    cached_tokens: int = 0
    endpoint: str = ""


@dataclass
class RetryStats:
    retries: Counter = field(default_factory=Counter)  # kind -> retries made
    backoff_seconds: float = 0.0
    retry_after_honoured: int = 0


def chat_request(model: str, messages: list[dict], sampling: dict) -> dict:
    """The body of one chat completion request (live, or one line of a batch)."""
    return {"model": model, "messages": messages, **sampling}


def parse_completion(data: object, estimated_tokens: int, start: str = "") -> Reply:
    """The reply inside a decoded chat completion (a 200's body, or one line of a batch's results).

    Cached prompt tokens (`usage.prompt_tokens_details.cached_tokens`, from providers' prefix caching) are kept apart,
    so they are priced at the cached rate.
    """
    try:
        choice = data["choices"][0] if data["choices"] else {}
        text = (choice.get("message") or {}).get("content") if choice else ""
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens", estimated_tokens))
        completion_tokens = int(usage.get("completion_tokens", 0))
        cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        finish_reason = choice.get("finish_reason") if choice else None
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise InvalidResponse(f"the body is not a chat completion: {start or repr(str(data)[:80])}") from None
    if text is not None and not isinstance(text, str):
        raise InvalidResponse(f"the message content is a {type(text).__name__}, not text")
    return Reply(text or "", prompt_tokens, completion_tokens, finish_reason, min(cached_tokens, prompt_tokens))


def _dropped_connection(error: BaseException) -> BaseException | None:
    """The socket-level failure under an SDK timeout error, if that is what it really is.

    The SDK's aiohttp transport maps every `aiohttp.ClientConnectionError` (a refused connection, a server that hung
    up) to a connect *timeout* (openai 3.57, `_vendor/httpx_aiohttp`): the cause chain still says what happened.
    """
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, (aiohttp.ClientConnectionError, OSError)) and not isinstance(cause, TimeoutError):
            return cause
        cause = cause.__cause__
    return None


class TeacherClient:
    """Chat completions against one or several OpenAI-compatible endpoints, within per-endpoint RPM/TPM budgets."""

    def __init__(
        self,
        *,
        base_url: str | Sequence[str],
        api_key: str,
        model: str,
        sampling: dict,
        timeout: float,
        max_retries: int,
        concurrency: int,
        backoff_base: float = BACKOFF_BASE,
        rpm: float | None = None,
        tpm: float | None = None,
        rng: random.Random | None = None,
        max_reply_chars: int | None = None,
        failures_to_eject: int = FAILURES_TO_EJECT,
        eject_seconds: float = COOLDOWN_SECONDS,
        on_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.model = model
        self.sampling = dict(sampling)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.timeout = timeout
        # A body larger than the longest acceptable reply could need is refused unread by the JSON parser.
        self.max_body_bytes = JSON_BYTES_PER_CHAR * max_reply_chars + 65_536 if max_reply_chars else None
        self.rng = rng or random.Random()
        self.on_latency = on_latency  # told each successful request's seconds (the synthesis loop's pacing)
        self.stats = RetryStats()
        self._secrets = (api_key,)
        ssl_context = httpx2.create_ssl_context()  # loading CA certificates once, not per pool
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        endpoints = [
            Endpoint(
                url,
                api_key=api_key,
                timeout=timeout,
                concurrency=concurrency,
                rpm=rpm,
                tpm=tpm,
                ssl_context=ssl_context,
            )
            for url in urls
        ]
        self.pool = EndpointPool(endpoints, failures_to_eject=failures_to_eject, cooldown=eject_seconds)

    async def aclose(self) -> None:
        await self.pool.aclose()

    def _classify(self, error: Exception) -> tuple[str, float | None]:
        """(retry kind, server-requested delay) for a retriable error; raises FatalAPIError otherwise."""
        if isinstance(error, (openai.APIStatusError, StatusError)):
            status = error.status_code
            if status in FATAL_STATUSES or status == 422:
                detail = scrub(str(error.message), self._secrets)
                label = FATAL_STATUSES.get(status, "unprocessable request")
                hint = " (check the key in the environment variable)" if status in (401, 403) else ""
                raise FatalAPIError(f"teacher answered {status} {label}{hint}: {detail}", status) from None
            headers = error.headers if isinstance(error, StatusError) else error.response.headers
            retry_after = parse_retry_after(dict(headers))
            return ("rate_limit" if status == 429 else f"http_{status}"), retry_after
        if isinstance(error, (openai.APITimeoutError, TimeoutError)):
            return ("connection" if _dropped_connection(error) else "timeout"), None
        if isinstance(error, (openai.APIConnectionError, aiohttp.ClientError, OSError)):
            return "connection", None
        if isinstance(error, (openai.APIResponseValidationError, InvalidResponse)):
            return INVALID_RESPONSE, None
        raise error

    def scrub(self, text: str) -> str:
        """`text` without the key or anything shaped like a credential (what the teacher says, before it is shown)."""
        return scrub(text, self._secrets)

    def classify(self, error: Exception) -> tuple[str, float | None, str]:
        """(retry kind, server-requested delay, scrubbed message) of a retriable error; FatalAPIError otherwise."""
        kind, retry_after = self._classify(error)
        return kind, retry_after, self._describe(error)

    def _describe(self, error: Exception) -> str:
        """`Type: message` of an error, naming the socket failure under a mislabelled timeout; keys scrubbed."""
        if isinstance(error, openai.APITimeoutError):
            error = _dropped_connection(error) or error
        return scrub(f"{type(error).__name__}: {error}", self._secrets)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, refused unread past `max_body_bytes` (a runaway or hostile server cannot fill memory)."""
        limit = self.max_body_bytes
        if limit is None:
            return await response.read()
        if response.content_length is not None and response.content_length > limit:
            raise InvalidResponse(f"the body has {response.content_length} bytes, more than the {limit} allowed")
        chunks, size = [], 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise InvalidResponse(f"the body has more than the {limit} bytes allowed")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _post(self, endpoint: Endpoint, payload: bytes, estimated_tokens: int) -> Reply:
        """One chat completion over the endpoint's aiohttp pool; a 200 is checked by hand (HTML, broken bodies)."""
        async with endpoint.session.post(endpoint.chat_url, data=payload, proxy=endpoint.proxy) as response:
            if not 200 <= response.status < 300:
                body = await response.content.read(ERROR_BODY_BYTES)
                raise StatusError(response.status, dict(response.headers), error_message(body))
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            body = await self._read_body(response)
        start = repr(body[:80].decode("utf-8", "replace"))
        if not content_type.endswith("json"):
            raise InvalidResponse(f"HTTP {response.status} with Content-Type {content_type or 'none'}: {start}")
        try:
            data = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise InvalidResponse(f"the body is not UTF-8 ({error.reason} at byte {error.start})") from None
        except ValueError as error:
            raise InvalidResponse(f"the body is not JSON ({error}): {start}") from None
        return parse_completion(data, estimated_tokens, start)

    async def complete(self, messages: list[dict], estimated_tokens: int) -> Reply:
        """Send one chat completion, retrying transient failures up to `max_retries` times (on any endpoint)."""
        reserve = estimated_tokens + int(self.sampling.get("max_tokens") or 0)
        payload = json.dumps(chat_request(self.model, messages, self.sampling)).encode("utf-8")
        attempt = 0
        while True:
            with self.pool.use() as endpoint:
                hold = endpoint.paused_until - time.monotonic()
                if hold > 0:  # a Retry-After seen by any worker holds every worker of that endpoint
                    await asyncio.sleep(hold)
                if endpoint.rpm is not None:
                    await endpoint.rpm.acquire(1)
                if endpoint.tpm is not None:
                    await endpoint.tpm.acquire(reserve)
                started = time.monotonic()
                try:
                    # A plain aiohttp POST, not the SDK's `chat.completions.create` nor its `post`: measured at
                    # realistic latency (bench/bench_synthesis.py: 1024 in flight, log-normal latency with median 8 s
                    # and p95 30 s; docs/benchmarks.md), the SDK's request and response objects cost more client CPU
                    # per request than all the rest of a request's work together. The wire format is the same JSON,
                    # errors are mapped to the same kinds as the SDK's (see _classify), and the SDK still makes the
                    # Batch API calls (batch_api.py), where a few requests per batch make its cost irrelevant.
                    reply = await self._post(endpoint, payload, estimated_tokens)
                except (aiohttp.ClientError, OSError, TimeoutError, StatusError, InvalidResponse) as error:
                    if endpoint.tpm is not None:
                        endpoint.tpm.refund(reserve)
                    try:
                        kind, retry_after = self._classify(error)
                    except FatalAPIError:
                        self.pool.released(endpoint)
                        raise
                    message = self._describe(error)
                    if kind == "rate_limit":
                        self.pool.released(endpoint)
                    else:
                        self.pool.failed(endpoint)
                except BaseException:
                    self.pool.released(endpoint)
                    raise
                else:
                    self.pool.succeeded(endpoint)
                    if self.on_latency is not None:
                        self.on_latency(time.monotonic() - started)
                    if endpoint.tpm is not None:
                        endpoint.tpm.refund(max(0, reserve - reply.prompt_tokens - reply.completion_tokens))
                    reply.endpoint = endpoint.name
                    return reply
            if attempt == self.max_retries:
                raise TransientAPIError(kind, f"gave up after {attempt + 1} attempts; last error {message}")
            self.stats.retries[kind] += 1
            delay = backoff_delay(attempt, base=self.backoff_base, rng=self.rng)
            if retry_after is not None:
                self.stats.retry_after_honoured += 1
                delay = retry_after + delay * 0.1  # what the server asked, plus a little jitter to de-synchronise
                endpoint.paused_until = max(endpoint.paused_until, time.monotonic() + retry_after)
            self.stats.backoff_seconds += delay
            attempt += 1
            await asyncio.sleep(delay)
