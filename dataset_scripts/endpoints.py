"""Several OpenAI-compatible endpoints serving one model (vLLM replicas, gateways): which one gets the next request.

Each request goes to the endpoint with the fewest requests outstanding, so a slow replica gets less work. Each
endpoint has its own RPM/TPM buckets and its own Retry-After pause. An endpoint whose requests fail
`failures_to_eject` times in a row (connection errors, timeouts, 5xx, broken bodies; not 429s, which are a rate
signal) is taken out for `cooldown` seconds; then exactly one probe request goes to it: success puts it back, failure
takes it out again for twice as long (up to `max_cooldown`). While every endpoint is out, requests still go to the
one due back first, so a single endpoint behaves as before (the client's own backoff paces it).
"""

from __future__ import annotations

import base64
import ssl
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import aiohttp
import httpx2
import openai

from dataset_scripts.limits import TokenBucket
from toolkit.cli import public_url


FAILURES_TO_EJECT = 5  # failures in a row that take an endpoint out (--endpoint-failures)
COOLDOWN_SECONDS = 30.0  # how long it stays out before its probe, doubling while probes fail (--endpoint-cooldown)


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """(url without user:password, headers): credentials in a base URL are sent as HTTP Basic auth.

    They replace the API key for that endpoint, as the SDK's httpx transport did; its aiohttp transport refuses a URL
    with credentials next to an Authorization header, so the header is built here.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    bare = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return bare, {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}


def environment_proxy(url: str) -> str | None:
    """The proxy the environment sets for `url` (HTTPS_PROXY / HTTP_PROXY, minus NO_PROXY), as httpx would use it.

    Read once per endpoint: aiohttp's own `trust_env` would also look up ~/.netrc in a thread for every request.
    """
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def read_url_file(path: str) -> list[str]:
    """Base URLs from a text file, one a line; blank lines and `#` comments are ignored."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.split("#", 1)[0].strip() for line in handle]
    urls = [line for line in lines if line]
    if not urls:
        raise ValueError(f"{path}: no base URLs in the file")
    return urls


class Endpoint:
    """One base URL: its HTTP connections, its rate buckets, and its health.

    Chat completions go through `session`, one aiohttp pool per endpoint (see TeacherClient.complete for why not
    through the SDK); the Batch API's files and batches go through `client`, the `openai` SDK, made on first use.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        timeout: float,
        concurrency: int,
        rpm: float | None,
        tpm: float | None,
        ssl_context: ssl.SSLContext,
    ) -> None:
        self.url = url
        self.name = public_url(url)
        self.base_url, basic_auth = split_credentials(url)
        parts = urlsplit(self.base_url)
        self.chat_url = parts._replace(path=parts.path.rstrip("/") + "/chat/completions").geturl()
        self.headers = {"Authorization": f"Bearer {api_key}"} | basic_auth
        self._basic_auth = basic_auth
        self.proxy = environment_proxy(self.base_url)
        self._api_key = api_key
        self._timeout = timeout
        self._connections = max(concurrency, 1)
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._client: openai.AsyncOpenAI | None = None
        self.rpm = TokenBucket(rpm) if rpm else None
        self.tpm = TokenBucket(tpm) if tpm else None
        self.outstanding = 0
        self.paused_until = 0.0  # Retry-After
        self.failures_in_row = 0
        self.out_until = 0.0
        self.cooldown = 0.0  # of the current ejection; 0 while in service
        self.probing = False
        self.stats: Counter = Counter()  # requests, failures, ejections

    @property
    def session(self) -> aiohttp.ClientSession:
        """The chat-completion pool, made inside the running event loop on first use; `timeout` bounds a request."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connections + 4, ssl=self._ssl_context)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={**self.headers, "Content-Type": "application/json", "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The `openai` SDK client (Batch API: files and batches), over its aiohttp transport; made on first use."""
        if self._client is None:
            limits = httpx2.Limits(max_connections=self._connections + 4, max_keepalive_connections=self._connections)
            transport = openai.DefaultAioHttpClient(limits=limits, timeout=self._timeout, verify=self._ssl_context)
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                default_headers=self._basic_auth,
                max_retries=0,
                timeout=self._timeout,
                http_client=transport,
            )
        return self._client

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._client is not None:
            await self._client.close()


class EndpointPool:
    """Chooses the endpoint of each request and keeps track of which endpoints are in service."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        failures_to_eject: int = FAILURES_TO_EJECT,
        cooldown: float = COOLDOWN_SECONDS,
        max_cooldown: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise ValueError("need at least one endpoint")
        self.endpoints = endpoints
        self.failures_to_eject = failures_to_eject
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock

    def _choose(self) -> Endpoint:
        now = self.clock()
        ready = [e for e in self.endpoints if e.out_until <= now and e.paused_until <= now and not e.probing]
        if not ready:  # all out, probing or paused: the one due back first
            return min(self.endpoints, key=lambda e: (max(e.out_until, e.paused_until), e.outstanding))
        return min(ready, key=lambda e: (e.outstanding, e.stats["requests"]))

    @contextmanager
    def use(self) -> Iterator[Endpoint]:
        """The endpoint for one request, counted as outstanding while the request runs."""
        endpoint = self._choose()
        if endpoint.cooldown and endpoint.out_until <= self.clock() and not endpoint.probing:
            endpoint.probing = True  # this request is its probe; nothing else goes there until it returns
        endpoint.outstanding += 1
        endpoint.stats["requests"] += 1
        try:
            yield endpoint
        finally:
            endpoint.outstanding -= 1

    def succeeded(self, endpoint: Endpoint) -> None:
        endpoint.failures_in_row = 0
        endpoint.cooldown = 0.0
        endpoint.probing = False

    def failed(self, endpoint: Endpoint) -> None:
        """A failure that says something about the endpoint's health (not a 429, not a fatal 4xx)."""
        endpoint.stats["failures"] += 1
        endpoint.failures_in_row += 1
        if endpoint.probing or endpoint.failures_in_row >= self.failures_to_eject:
            longer = 2 * endpoint.cooldown if endpoint.probing else self.base_cooldown
            endpoint.cooldown = min(self.max_cooldown, longer)
            endpoint.out_until = max(endpoint.out_until, self.clock() + endpoint.cooldown)
            endpoint.probing = False
            endpoint.failures_in_row = 0
            endpoint.stats["ejections"] += 1

    def released(self, endpoint: Endpoint) -> None:
        """A request that ended without saying anything about health (429, fatal): a probe slot is freed."""
        endpoint.probing = False

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.aclose()
