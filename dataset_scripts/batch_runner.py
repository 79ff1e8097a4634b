"""Synthesis through the Batch API (`--api batch`): the same records, rejects and resume rules, at the batch price.

Each round writes the requests every unfinished input needs next as JSONL (split at `max_requests` requests and
`max_bytes` bytes per file), uploads it, creates a batch, polls until the batch ends, and maps the results back by
`custom_id` (`<key>.<step>.<attempt>`: the record key, which template of the strategy, which parse retry). Multi-call
strategies and parse retries take further rounds. Requests answered 5xx (or 408/409/429) and those a batch left
unanswered (expired, cancelled) are sent again in the next round, up to `--max-retries` times; a request refused with
another 4xx becomes a reject with the reason; nothing answered is ever sent again. A batch that fails validation
(`failed`, `errors.data`) stops the run with its errors: resubmitting the same file cannot help. What does not fit
the budget waits for running batches to settle (their billed cost replaces their reservations).

The batches-<shard>.jsonl store (same append-only store as the shards) is what makes a killed run resumable without
paying twice: `uploaded` (file id and its custom ids) is written before the batch is created and `created` right after,
so a rerun polls the same batches; a file uploaded but without a `created` row is looked up in the batch list once
(`created` or `never_created` records the answer). `progress` rows keep an input's state between rounds (fields so far,
usage so far), `collected` marks a batch whose results are all applied. Prepared images are stored in the shard's image
pack (as records need them anyway; identical bytes once) and read back when their request line is built, so memory does
not grow with the inputs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass, field

from dataset_scripts.batch_api import (
    CHAT_ENDPOINT,
    RETRIED_STATUSES,
    TERMINAL,
    BatchAPI,
    result_error,
    validation_errors,
)
from dataset_scripts.images import PreparedImage
from dataset_scripts.inputs import Item
from dataset_scripts.limits import BudgetExhausted
from dataset_scripts.runner import Synthesis, judge_reply
from dataset_scripts.sections import Rejected, reply_char_limit
from dataset_scripts.shards import OutputWriteError, iter_jsonl, read_image
from dataset_scripts.teacher_client import (
    INVALID_RESPONSE,
    FatalAPIError,
    InvalidResponse,
    TransientAPIError,
    chat_request,
    parse_completion,
)
from dataset_scripts.usage import Usage


@dataclass(frozen=True)
class BatchOptions:
    """The Batch API's limits; these defaults are also the command line's (synthesize.py reads them)."""

    poll_interval: float = 30.0
    max_requests: int = 50_000  # the provider's limit per batch
    max_bytes: int = 190_000_000  # under the 200 MB input file limit
    completion_window: str = "24h"


@dataclass
class _Pending:
    """One input between rounds."""

    item: Item
    key: str
    image: PreparedImage | None  # `data` empty: the bytes live in the image pack, where `stored` says
    stored: dict | None  # image, image_offset, image_length (the record's fields)
    step: int = 0
    attempt: int = 0
    fields: dict = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    errors: int = 0  # per-request errors and expiries in this run
    reserved: float = 0.0
    estimate: int = 0

    @property
    def custom_id(self) -> str:
        return f"{self.key}.{self.step}.{self.attempt}"


class BatchSynthesis(Synthesis):
    """`Synthesis` with the request path replaced by rounds of batches."""

    def __init__(self, *args, batch: BatchOptions, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batch = batch
        self.api = BatchAPI(self.client, batch.completion_window)
        self.pending: dict[str, _Pending] = {}
        self.outstanding: dict[str, set[str]] = {}  # batch id -> custom ids
        self.max_tokens = int(self.spec.sampling.get("max_tokens") or 0)

    def _log(self, row: dict) -> None:
        self.out.append("batches", row)

    async def _work(self) -> None:
        with self._progress_bar() as self.bar:
            await self._work_in_batches()

    def _progress(self) -> None:
        """Inputs settled so far (written, rejected, skipped or resumed; not those given up) and batches running."""
        self._show_progress(self.bar, refresh=True, batches=len(self.outstanding))

    async def _work_in_batches(self) -> None:
        try:
            await self._resume_and_prepare()
            self._progress()
            await self._rounds()
        except FatalAPIError as error:
            self._stop("fatal", str(error))
        except OutputWriteError as error:
            self.failed["write"] += 1
            self._stop("disk", str(error))
        except TransientAPIError as error:
            self._stop("failures", f"the batch API at {self.teacher} failed ({error}); a rerun polls the same batches")

    async def _resume_and_prepare(self) -> None:
        uploaded, created, collected, progress = {}, {}, set(), {}
        for row in iter_jsonl(self.out.path("batches")):
            event = row.get("event")
            if event == "uploaded":
                uploaded[row["file_id"]] = row["custom_ids"]
            elif event == "created":
                created[row["file_id"]] = row["batch_id"]
            elif event == "never_created":  # looked up once in the batch list and not found: never again
                uploaded.pop(row["file_id"], None)
            elif event == "collected":
                collected.add(row["batch_id"])
            elif event == "progress":
                progress[row["key"]] = row
        for file_id, custom_ids in uploaded.items():
            if file_id not in created:  # killed between upload and the `created` row: did the create happen?
                batch_id = await self.api.find(file_id)
                if batch_id is None:
                    self._log({"event": "never_created", "file_id": file_id})
                    continue
                created[file_id] = batch_id
                self._log({"event": "created", "file_id": file_id, "batch_id": batch_id})
            if created[file_id] not in collected:
                self.outstanding[created[file_id]] = set(custom_ids)

        async def prepare(position: int, item: Item) -> None:
            prepared = await self._prepare(item, position)
            if prepared is None:
                return
            key, image = prepared
            stored = await asyncio.to_thread(self.out.store_image, image.data) if image else None
            pending = _Pending(item, key, dataclasses.replace(image, data=b"") if image else None, stored)
            state = progress.get(key)
            if state is not None:
                pending.step, pending.attempt, pending.fields = state["step"], state["attempt"], state["fields"]
                pending.usage = Usage(**state["usage"])
            self.pending[key] = pending

        inputs = enumerate(self.items)  # taken in order by --concurrency workers: near-duplicates are decided so

        async def worker() -> None:
            for position, item in inputs:
                await prepare(position, item)

        await asyncio.gather(*(worker() for _ in range(max(1, self.options.concurrency))))
        in_flight = set().union(*self.outstanding.values())
        for pending in self.pending.values():  # what the batches still running will cost
            if pending.custom_id in in_flight:  # already committed: reserved even past the budget
                self._reserve(pending, self._messages(pending, with_image=False), committed=True)

    def _messages(self, pending: _Pending, with_image: bool = True) -> list[dict]:
        image = pending.image
        if image is not None and with_image:
            image = dataclasses.replace(image, data=read_image(self.out.root, pending.stored))
        template = self.spec.templates[pending.step]
        return self.spec.messages(template, image, pending.item.question, pending.fields.get("description"))

    def _reserve(self, pending: _Pending, messages: list[dict], committed: bool = False) -> None:
        pending.estimate = self.spec.estimate_prompt_tokens(messages, pending.image)
        reserved = self.meter.estimate(pending.estimate, self.max_tokens)
        if committed:
            self.meter.reserved += reserved
        elif not self.meter.try_reserve(reserved):
            raise BudgetExhausted
        pending.reserved = reserved

    async def _rounds(self) -> None:
        while True:
            in_flight = set().union(*self.outstanding.values())
            todo = [p for p in self.pending.values() if p.custom_id not in in_flight and not self._given_up(p)]
            if todo and self.stop_reason is None:
                try:
                    await self._submit(todo)
                except BudgetExhausted:  # what fits was submitted; the rest waits for running batches to settle
                    if not self.outstanding:  # nothing left to settle: the budget really is spent
                        self._stop("budget", f"--max-cost {self.meter.max_cost} reached")
            self._progress()
            if not self.outstanding:
                return
            finished = False
            for batch_id in list(self.outstanding):
                batch = await self._retrieve(batch_id)
                if batch.status in TERMINAL:
                    await self._collect(batch, self.outstanding.pop(batch_id))
                    self._progress()
                    finished = True
            if not finished:
                await asyncio.sleep(self.batch.poll_interval)

    async def _retrieve(self, batch_id: str):
        """The batch's state; one written down in batches-*.jsonl that the endpoint does not know stops the run."""
        try:
            return await self.api.retrieve(batch_id)
        except FatalAPIError as error:
            if error.status != 404:
                raise
            raise FatalAPIError(
                f"batch {batch_id} written down in {self.out.path('batches')} is unknown to this endpoint ({error}): "
                "it was made with another --base-url or key (project); rerun with those, or use another --output "
                "(moving that file away submits the unfinished inputs again, paid again)",
                404,
            ) from None

    def _given_up(self, pending: _Pending) -> bool:
        return pending.errors > self.client.max_retries

    async def _submit(self, todo: list[_Pending]) -> None:
        lines: list[tuple[str, bytes]] = []
        size = 0
        for pending in todo:
            messages = self._messages(pending)
            try:
                self._reserve(pending, messages)
            except BudgetExhausted:
                if lines:
                    await self._send(lines)
                raise
            body = chat_request(self.client.model, messages, self.client.sampling)
            request = {"custom_id": pending.custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": body}
            line = (json.dumps(request, ensure_ascii=False) + "\n").encode()
            if lines and (len(lines) >= self.batch.max_requests or size + len(line) > self.batch.max_bytes):
                await self._send(lines)
                lines, size = [], 0
            lines.append((pending.custom_id, line))
            size += len(line)
        if lines:
            await self._send(lines)

    async def _send(self, lines: list[tuple[str, bytes]]) -> None:
        custom_ids = [custom_id for custom_id, _ in lines]
        file_id = await self.api.upload(b"".join(line for _, line in lines), f"{self.out.tag}-requests.jsonl")
        await asyncio.to_thread(self._log, {"event": "uploaded", "file_id": file_id, "custom_ids": custom_ids})
        batch_id = await self.api.create(file_id)
        await asyncio.to_thread(self._log, {"event": "created", "file_id": file_id, "batch_id": batch_id})
        self.outstanding[batch_id] = set(custom_ids)
        self.this_run["batch:batches"] += 1
        self.this_run["batch:requests"] += len(custom_ids)
        self.client.pool.endpoints[0].stats["requests"] += len(custom_ids)  # by_endpoint.sent, as in chat mode

    async def _collect(self, batch, custom_ids: set[str]) -> None:
        results = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                for line in (await self.api.content(file_id)).splitlines():
                    if line.strip():
                        row = json.loads(line)
                        results[row.get("custom_id")] = row
        if batch.status != "completed":
            self.this_run[f"batch:{batch.status}"] += 1
        if batch.status == "failed":  # the input file failed validation: resubmitting it cannot help
            reason = self.client.scrub(validation_errors(batch))
            await asyncio.to_thread(self._log, {"event": "collected", "batch_id": batch.id, "failed": reason})
            for custom_id in custom_ids:
                pending = self.pending.get(custom_id.split(".", 1)[0])
                if pending is not None and pending.custom_id == custom_id:
                    self.meter.settle(pending.reserved, 0, 0)
            raise FatalAPIError(f"batch {batch.id} failed validation: {reason}")
        for custom_id in sorted(custom_ids):
            pending = self.pending.get(custom_id.split(".", 1)[0])
            if pending is None or pending.custom_id != custom_id:
                continue  # finished, or already applied by a run that was killed before `collected`
            await asyncio.to_thread(self._apply, pending, results.get(custom_id))
        await asyncio.to_thread(self._log, {"event": "collected", "batch_id": batch.id})

    def _apply(self, pending: _Pending, result: dict | None) -> None:
        """One result into the input's state: next round, a record or a reject (written before returning)."""
        response = (result or {}).get("response") or {}
        if response.get("status_code") != 200:
            self.meter.settle(pending.reserved, 0, 0)
            status, message = result_error(result)
            message = self.client.scrub(message)
            if status is not None and 400 <= status < 500 and status not in RETRIED_STATUSES:
                # The request itself was refused (e.g. "Invalid image."): a reject with the reason, as a 200 with an
                # unusable body is; --retry-rejects tries it again.
                self._finish(pending, rejection=Rejected(f"http_{status}", message))
                return
            self.client.pool.endpoints[0].stats["failures"] += 1
            pending.errors += 1
            if self._given_up(pending):  # left for a rerun
                self._failed("batch_request", f"no answer after {pending.errors} tries in batches ({message})")
            else:
                self.this_run["batch:resubmitted"] += 1
            return
        template = self.spec.templates[pending.step]
        try:
            reply = parse_completion(response.get("body"), pending.estimate)
        except InvalidResponse as error:
            self.meter.settle(pending.reserved, 0, 0)
            self._finish(pending, rejection=Rejected(INVALID_RESPONSE, str(error)), raw="")
            return
        cost = self.meter.settle(
            pending.reserved,
            reply.prompt_tokens,
            reply.completion_tokens,
            expected=(pending.estimate, self.max_tokens),
            cached_tokens=reply.cached_tokens,
        )
        pending.usage.add(reply.prompt_tokens, reply.cached_tokens, reply.completion_tokens, cost)
        self.by_endpoint.setdefault(self.client.pool.endpoints[0].name, Usage()).add(
            reply.prompt_tokens, reply.cached_tokens, reply.completion_tokens, cost
        )
        try:
            parsed = judge_reply(template, reply, self.max_tokens)
        except Rejected as rejection:
            self.this_run[f"retry:{rejection.reason}"] += 1
            if pending.attempt >= self.options.max_parse_retries:
                self._finish(pending, rejection=rejection, raw=reply.text[: reply_char_limit(self.max_tokens)])
                return
            pending.attempt += 1
        else:
            pending.fields.update(parsed)
            if pending.step + 1 == len(self.spec.templates):
                self._finish(pending)
                return
            pending.step, pending.attempt = pending.step + 1, 0
        self._log(
            {
                "event": "progress",
                "key": pending.key,
                "step": pending.step,
                "attempt": pending.attempt,
                "fields": pending.fields,
                "usage": pending.usage.__dict__,
            }
        )

    def _finish(self, pending: _Pending, rejection: Rejected | None = None, raw: str = "") -> None:
        del self.pending[pending.key]
        if rejection is None:
            record = self._record(pending.item, pending.key, pending.usage, pending.image, pending.fields)
            self.out.append("records", record | (pending.stored or {}))
            self.this_run["done"] += 1
            return
        self.this_run[f"rejected:{rejection.reason}"] += 1
        reject = self._base(pending.item, pending.key, pending.usage, pending.image)
        reject.update(
            template=self.spec.templates[pending.step], reason=rejection.reason, detail=rejection.detail, raw=raw
        )
        self.out.append("rejects", reject)
