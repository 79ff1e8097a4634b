"""The Batch API calls synthesis makes (upload, create, find, poll, download), through the `openai` SDK's resources.

Control-plane calls are retried here with the client's backoff. Creating a batch is the one paid, non-idempotent
call: after a failed or timed-out create, the batch list is searched for one made from the same input file before
trying again, so a create that reached the server is never repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx2
import openai

from dataset_scripts.limits import backoff_delay
from dataset_scripts.teacher_client import TeacherClient, TransientAPIError


T = TypeVar("T")
TERMINAL = frozenset({"completed", "expired", "failed", "cancelled"})
CHAT_ENDPOINT = "/v1/chat/completions"
RETRIED_STATUSES = {408, 409, 429}  # per-request 4xx that may pass on a later try; other 4xx name the request


def validation_errors(batch: openai.types.Batch) -> str:
    """Why a `failed` batch was refused (its input file failed validation): `code: message (line N)`, one line."""
    errors = list(batch.errors.data or []) if batch.errors else []
    if not errors:
        return "no reason given"
    parts = [f"{e.code or 'error'}: {e.message or ''}" + (f" (line {e.line})" if e.line else "") for e in errors[:3]]
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def result_error(result: dict | None) -> tuple[int | None, str]:
    """(HTTP status or None, message) of one request's line that is not a 200 (None: no line at all)."""
    if result is None:
        return None, "no answer in the batch's output or error file"
    response = result.get("response") or {}
    body = response.get("body") if isinstance(response.get("body"), dict) else {}
    error = body.get("error") or result.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    status = response.get("status_code")
    label = f"HTTP {status}" if status else (code or "error")
    return status, f"{label}: {message or 'no message'}"


class BatchAPI:
    def __init__(self, teacher: TeacherClient, completion_window: str = "24h") -> None:
        self.teacher = teacher
        self.client = teacher.pool.endpoints[0].client
        self.window = completion_window

    async def _retry(self, call: Callable[[], Awaitable[T]], recover: Callable[[], Awaitable[T | None]] | None = None):
        attempt = 0
        while True:
            try:
                return await asyncio.wait_for(call(), self.teacher.timeout)
            except (openai.APIError, httpx2.HTTPError, TimeoutError) as error:
                kind, retry_after, message = self.teacher.classify(error)  # raises FatalAPIError for 4xx
            if recover is not None:
                found = await recover()
                if found is not None:
                    return found
            if attempt == self.teacher.max_retries:
                raise TransientAPIError(kind, f"batch API: gave up after {attempt + 1} attempts; last error {message}")
            self.teacher.stats.retries[kind] += 1
            delay = retry_after if retry_after is not None else backoff_delay(attempt, base=self.teacher.backoff_base)
            self.teacher.stats.backoff_seconds += delay
            attempt += 1
            await asyncio.sleep(delay)

    async def upload(self, data: bytes, name: str) -> str:
        """Upload one batch input file (JSONL); returns its file id."""
        uploaded = await self._retry(
            lambda: self.client.files.create(file=(name, data, "application/jsonl"), purpose="batch")
        )
        return uploaded.id

    async def _list_find(self, input_file_id: str) -> str | None:
        # The list is newest first and pages through every batch of the project: a rerun asks once per file
        # (BatchSynthesis writes the answer down either way).
        async for batch in self.client.batches.list(limit=100):
            if batch.input_file_id == input_file_id:
                return batch.id
        return None

    async def find(self, input_file_id: str) -> str | None:
        """The id of a batch already created from this input file, if any."""
        return await self._retry(lambda: self._list_find(input_file_id))

    async def create(self, input_file_id: str) -> str:
        """Create the batch of an uploaded file (exactly once, see the module notes); returns its id."""
        batch = await self._retry(
            lambda: self.client.batches.create(
                input_file_id=input_file_id, endpoint=CHAT_ENDPOINT, completion_window=self.window
            ),
            recover=lambda: self._find_quietly(input_file_id),
        )
        return batch if isinstance(batch, str) else batch.id

    async def _find_quietly(self, input_file_id: str) -> str | None:
        try:
            return await asyncio.wait_for(self._list_find(input_file_id), self.teacher.timeout)
        except (openai.APIError, httpx2.HTTPError, TimeoutError):
            return None

    async def retrieve(self, batch_id: str) -> openai.types.Batch:
        return await self._retry(lambda: self.client.batches.retrieve(batch_id))

    async def content(self, file_id: str) -> bytes:
        response = await self._retry(lambda: self.client.files.content(file_id))
        return response.content
