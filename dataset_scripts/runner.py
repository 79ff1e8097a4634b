"""The synthesis engine: bounded-concurrency workers that turn inputs into records, resumable at any instant.

Workers pull items, skip those finished by an earlier run, prepare the image, call the teacher for each template of
the strategy, validate (retrying bad replies a bounded number of times), and append one record, reject or skip line.
The budget is reserved before every request (limits.BudgetGate); a fatal API error cancels everything at once; Ctrl-C
still ends with the summary. How the run ended is decided once, in outcome.py; the summary is run_summary.py's.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass

from tqdm import tqdm

from dataset_scripts.filters import FilterOptions
from dataset_scripts.first_copies import NEAR_DUPLICATE, FirstCopies
from dataset_scripts.images import PreparedImage, SkipImage, prepare
from dataset_scripts.inputs import Item
from dataset_scripts.limits import BudgetExhausted, BudgetGate, CostMeter
from dataset_scripts.outcome import RunCounts, decide
from dataset_scripts.run_summary import run_summary
from dataset_scripts.sections import Rejected, parse_reply, reply_char_limit
from dataset_scripts.shards import OutputDir, OutputWriteError, iter_jsonl
from dataset_scripts.tasks import TaskSpec
from dataset_scripts.teacher_client import (
    INVALID_RESPONSE,
    FatalAPIError,
    Reply,
    TeacherClient,
    TransientAPIError,
)
from dataset_scripts.thread_batches import ThreadBatches
from dataset_scripts.usage import Usage, shard_totals
from modeling_allava.processing_allava import DEFAULT_MAX_IMAGE_PIXELS
from toolkit.cost import NO_PRICE


@dataclass(frozen=True)
class RunOptions:
    """How a run works; these defaults are also the command line's (synthesize.py reads them: one source each)."""

    concurrency: int = 16
    max_parse_retries: int = 2
    max_side: int = 768
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # the CLI's --max-pixels also honours $ALLAVA_MAX_IMAGE_PIXELS
    max_image_bytes: int = 20_000_000
    fetch_timeout: float = 20.0
    retry_rejects: bool = False
    max_consecutive_failures: int = 50
    progress: bool = True
    image_hash_distance: int | None = FilterOptions.hash_distance  # near-duplicates (first_copies.py); None: off


def judge_reply(template: str, reply: Reply, max_tokens: int) -> dict:
    """The parsed fields of a reply, or `Rejected` (truncated, malformed, a refusal, ...)."""
    if reply.finish_reason == "length":
        raise Rejected("truncated", f"the reply hit max_tokens={max_tokens}")
    return parse_reply(template, reply.text, reply_char_limit(max_tokens))


class Synthesis:
    """One shard's run; `await run()` returns the summary (also written to summary-<shard>.json)."""

    def __init__(
        self,
        spec: TaskSpec,
        items: list[Item],
        out: OutputDir,
        client: TeacherClient,
        meter: CostMeter,
        options: RunOptions,
        describe_run: dict,
    ) -> None:
        self.spec = spec
        self.items = items
        self.out = out
        self.client = client
        self.meter = meter
        self.budget = BudgetGate(meter)
        self.options = options
        self.describe_run = describe_run
        # Image reads and output writes in batches, one thread hop each (see thread_batches.py). A batch that is not
        # full lingers 50 ms for company; "full" scales with the workers (1/8 of them), so a run with few workers and
        # a fast teacher waits little and a run with 1024 in flight carries several reads or rows per hop.
        batch = max(1, options.concurrency // 8)
        self.image_reads = ThreadBatches(
            self._read_images, max_batch=min(batch, 16), parallel=os.cpu_count() or 1, linger=0.05
        )
        self.commit = ThreadBatches(self._write_rows, max_batch=batch, linger=0.05)
        self.this_run: Counter = Counter()
        self.failed: Counter = Counter()
        self.stop_reason: str | None = None
        self.stop_message: str | None = None
        self.last_failure: str | None = None
        self._consecutive_failures = 0
        self.summary_written = False
        self.by_endpoint: dict[str, Usage] = {}  # this run's billed usage per endpoint

    def _load_previous(self) -> None:
        """What earlier runs finished: in any shard file of the folder (so changing --num-shards redoes nothing);
        the budget counts this shard's own spending only, inputs not finished included (usage.py)."""
        fingerprint = self.spec.fingerprint
        self.done_items: set[str] = set()
        self.done_keys: set[str] = set()
        self.skipped_seen: set[tuple[str, str]] = set()
        self.first_copies = FirstCopies(self.spec, self.options.image_hash_distance)
        for kind in ("records", "rejects"):
            for path in sorted(self.out.root.glob(f"{kind}-*-of-*.jsonl")):
                for row in iter_jsonl(path):
                    self.first_copies.remember(row)  # paid for: a reject that --retry-rejects tries again too
                    if row.get("fingerprint") == fingerprint and (kind == "records" or not self.options.retry_rejects):
                        self.done_items.add(row["item_id"])
                        self.done_keys.add(row["key"])
        for row in iter_jsonl(self.out.path("skipped")):
            self.skipped_seen.add((row["item_id"], row["reason"]))
        self.meter.spent = self.spent_before = shard_totals(self.out).usage.cost_usd
        self.claimed: set[str] = set()

    async def _skip(self, item: Item, reason: str, detail: str, **extra: object) -> None:
        """Count the skip; write it once per (input, reason), so reruns do not repeat lines."""
        self.this_run[f"skipped:{reason}"] += 1
        if (item.item_id, reason) not in self.skipped_seen:
            self.skipped_seen.add((item.item_id, reason))
            row = {"item_id": item.item_id, "origin": item.origin, "reason": reason, "detail": detail, **extra}
            await self.commit.submit(("skipped", row, None))

    async def _call_template(
        self, template: str, item: Item, image: PreparedImage | None, description: str | None, usage: Usage
    ) -> tuple[dict | None, Rejected | None, str]:
        """Parsed fields of one template's reply, or the last rejection and raw text after all retries."""
        messages = self.spec.messages(template, image, item.question, description)
        estimate = self.spec.estimate_prompt_tokens(messages, image)
        max_tokens = int(self.spec.sampling.get("max_tokens") or 0)
        max_chars = reply_char_limit(max_tokens)
        rejection, raw = None, ""
        for _ in range(self.options.max_parse_retries + 1):
            reserved = self.meter.estimate(estimate, max_tokens)
            await self.budget.reserve(reserved)
            try:
                reply = await self.client.complete(messages, estimate)
            except TransientAPIError as error:
                self.budget.settle(reserved)
                if error.kind != INVALID_RESPONSE:
                    raise
                # The teacher answered, but never with a chat completion: a reject with the reason, not a failure.
                return None, Rejected(INVALID_RESPONSE, str(error)), ""
            except BaseException:
                self.budget.settle(reserved)
                raise
            cost = self.budget.settle(
                reserved,
                reply.prompt_tokens,
                reply.completion_tokens,
                expected=(estimate, max_tokens),
                cached_tokens=reply.cached_tokens,
            )
            usage.add(reply.prompt_tokens, reply.cached_tokens, reply.completion_tokens, cost)
            self.by_endpoint.setdefault(reply.endpoint, Usage()).add(
                reply.prompt_tokens, reply.cached_tokens, reply.completion_tokens, cost
            )
            raw = reply.text[:max_chars]  # a runaway reply is never stored whole
            try:
                return judge_reply(template, reply, max_tokens), None, raw
            except Rejected as error:
                rejection = error
                self.this_run[f"retry:{error.reason}"] += 1
        return None, rejection, raw

    async def _prepare(self, item: Item, position: int) -> tuple[str, PreparedImage | None] | None:
        """(key, image) of an input still to do and now claimed; None if finished, skipped or a duplicate (near
        duplicates decided in input order: `position` is the input's place in `items`)."""
        if item.item_id in self.done_items:
            self.first_copies.pass_turn(position)
            self.this_run["resumed"] += 1
            return None
        image = None
        if self.spec.mode != "text":
            try:
                image, first = await self.first_copies.first_copy(position, item, self.image_reads.submit)
            except SkipImage as skip:
                await self._skip(item, skip.reason, skip.detail)
                return None
            if first is not None:
                await self._skip(item, NEAR_DUPLICATE, **self.first_copies.skip_fields(first, item, image, self.meter))
                return None
        key = self.spec.key(image, item.question)
        if key in self.done_keys or key in self.claimed:
            await self._skip(item, "duplicate", f"same content and recipe as record {key}")
            return None
        self.claimed.add(key)
        return key, image

    def _read_image(self, item: Item) -> PreparedImage:
        """Read and check one input image."""
        raw = item.read_image(self.options.fetch_timeout, self.options.max_image_bytes)
        image = prepare(raw, self.options.max_side, self.options.max_pixels, item.origin)
        return self.first_copies.signed(image, item.origin)

    def _read_images(self, items: list[Item]) -> list[PreparedImage | SkipImage]:
        """A batch of image reads, in a worker thread: each input's image, or why it is skipped."""
        results: list[PreparedImage | SkipImage] = []
        for item in items:
            try:
                results.append(self._read_image(item))
            except SkipImage as skip:
                results.append(skip)
        return results

    def _write_rows(self, entries: list[tuple[str, dict, bytes | None]]) -> list[None]:
        """A group commit, in a worker thread: the images, then the rows (one write and one fsync per file).

        Inputs count as done or rejected here, once durable: a worker cancelled (Ctrl-C) while its row is written
        is still counted, so the summary's inputs left agree with the files."""
        self.out.write_group(entries)
        for kind, row, _ in entries:
            if kind == "records":
                self.this_run["done"] += 1
            elif kind == "rejects":
                self.this_run[f"rejected:{row['reason']}"] += 1
        return [None] * len(entries)

    async def _process(self, item: Item, position: int) -> None:
        prepared = await self._prepare(item, position)
        if prepared is None:
            return
        key, image = prepared
        try:
            await self._synthesise(item, key, image)
        except BaseException:
            self.claimed.discard(key)  # not finished: an identical input later in the queue may take it over
            raise

    async def _synthesise(self, item: Item, key: str, image: PreparedImage | None) -> None:
        """The strategy's calls in order (two-call feeds the description to the second), then one record or reject."""
        usage, fields, description = Usage(), {}, None
        try:
            for template in self.spec.templates:
                parsed, rejection, raw = await self._call_template(template, item, image, description, usage)
                if parsed is None:
                    reject = self._base(item, key, usage, image)
                    reject.update(template=template, reason=rejection.reason, detail=rejection.detail, raw=raw)
                    await self.commit.submit(("rejects", reject, None))
                    return
                fields.update(parsed)
                description = fields.get("description")
        except (TransientAPIError, FatalAPIError, BudgetExhausted):
            if usage.requests:  # billed, but no record or reject will carry it: kept for the totals and the budget
                await self.commit.submit(("spent", self._base(item, key, usage), None))
            raise
        record = self._record(item, key, usage, image, fields)
        await self.commit.submit(("records", record, image.data if image else None))  # the image is stored first

    def _record(self, item: Item, key: str, usage: Usage, image: PreparedImage | None, fields: dict) -> dict:
        """The record row; `image` stays None until the write stores the image and names it (OutputDir.write_group)."""
        record = self._base(item, key, usage, image) | {
            "image": None,
            "image_sha256": image.source_sha256 if image else None,
            "original_caption": item.original_caption,
            "description": fields.get("description"),
            "candidates": fields.get("candidates"),
            "question": fields.get("question") or item.question,
            "answer": fields.get("answer"),
            "caption_request": self.spec.prompts.caption_request(key) if fields.get("description") else None,
        }
        return record

    def _base(self, item: Item, key: str, usage: Usage, image: PreparedImage | None = None) -> dict:
        return {
            "key": key,
            "item_id": item.item_id,
            "fingerprint": self.spec.fingerprint,
            "mode": self.spec.mode,
            "strategy": self.spec.strategy,
            "source": item.source,
            "origin": item.origin,
            "instruction": item.question,
            "teacher_model": self.spec.model,
            "prompt_version": self.spec.prompts.version,
            "prompt_hash": self.spec.prompt_hash,
            "sampling": self.spec.sampling,
            "usage": usage.as_dict(),
            "image_signature": image.signature if image else None,
        }

    async def _worker(self, queue: asyncio.Queue, bar: tqdm) -> None:
        while self.stop_reason is None:
            try:
                position, item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await self._process(item, position)
                self._consecutive_failures = 0
            except BudgetExhausted:
                self._stop("budget", f"--max-cost {self.meter.max_cost} reached")
                return
            except TransientAPIError as error:
                self._failed(error.kind, str(error))
                self._consecutive_failures += 1
                if self._consecutive_failures >= self.options.max_consecutive_failures:
                    self._stop(
                        "failures",
                        f"{self._consecutive_failures} items failed in a row at {self.teacher}; last: {error}",
                    )
            except OutputWriteError as error:  # e.g. a full disk: keep what is saved, start nothing new
                self.failed["write"] += 1
                self._stop("disk", str(error))
                return
            self._show_progress(bar)

    @property
    def teacher(self) -> str:
        """The endpoint(s), without credentials: what messages about the teacher name."""
        return ", ".join(endpoint.name for endpoint in self.client.pool.endpoints)

    def _failed(self, kind: str, message: str) -> None:
        """An input given up this run (left for a rerun), and why."""
        self.failed[kind] += 1
        self.last_failure = message

    def _settled(self) -> int:
        """Inputs of this run that are done, rejected, skipped or were finished before."""
        return self.this_run["done"] + self.this_run["resumed"] + self._count("rejected:") + self._count("skipped:")

    def _show_progress(self, bar: tqdm, refresh: bool = False, **extra: object) -> None:
        """The bar counts settled inputs only (an input given up is not), then spending, rejects and failures."""
        bar.update(self._settled() - bar.n)
        cost = f"${self.meter.spent:.4f}" if self.meter.price else NO_PRICE
        failed = sum(n for kind, n in self.failed.items() if kind != "write")
        postfix = {"cost": cost, "rejected": self._count("rejected:"), "failed": failed, **extra}
        bar.set_postfix(postfix, refresh=refresh)

    def _progress_bar(self) -> tqdm:
        return tqdm(total=len(self.items), disable=not self.options.progress, unit="item", smoothing=0.1)

    def _count(self, prefix: str) -> int:
        return sum(n for name, n in self.this_run.items() if name.startswith(prefix))

    def _stop(self, reason: str, message: str) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message

    async def run(self) -> dict:
        """The summary of the run, also when Ctrl-C cancelled it (then its ending says interrupted)."""
        started = time.monotonic()
        self.out.open()
        try:
            self._load_previous()
            interrupted = False
            try:
                await self._work()
            except asyncio.CancelledError:  # Ctrl-C (asyncio.Runner cancels the run): still tell how it ended
                interrupted = True
            await self.commit.drain()  # what cancelled workers handed over is counted in the files' totals
            summary = self.summarise(time.monotonic() - started, interrupted)
            try:
                self.out.write_summary(summary)
                self.summary_written = True
            except OutputWriteError as error:
                self._stop("disk", str(error))
                summary = self.summarise(time.monotonic() - started, interrupted)
            return summary
        finally:
            await self.commit.drain()  # what cancelled workers handed over is written before the files close
            await self.client.aclose()
            self.out.close()

    async def _work(self) -> None:
        """Every input through bounded-concurrency workers (the live chat API)."""
        queue: asyncio.Queue = asyncio.Queue()
        for position, item in enumerate(self.items):  # in order: near-duplicates are decided in this order
            queue.put_nowait((position, item))
        with self._progress_bar() as bar:
            workers = [asyncio.create_task(self._worker(queue, bar)) for _ in range(max(1, self.options.concurrency))]
            try:
                await asyncio.gather(*workers)
            except FatalAPIError as error:
                self._stop("fatal", str(error))
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    def summarise(self, wall_time: float, interrupted: bool = False) -> dict:
        """Cumulative counts over the shard folder (all runs), what this run did, and how it ended."""
        totals = shard_totals(self.out)
        failed = sum(n for kind, n in self.failed.items() if kind != "write")
        left = len(self.items) - self._settled()
        counts = RunCounts(
            len(self.items), left, totals.done, totals.rejected, totals.skipped, failed, self.last_failure
        )
        ending = decide(counts, self.teacher, self.stop_reason, self.stop_message, interrupted)
        return run_summary(
            self.describe_run | {"items_in_shard": len(self.items)},
            totals,
            ending,
            left,
            this_run=self.this_run,
            failed=self.failed,
            meter=self.meter,
            spent_before=self.spent_before,
            client=self.client,
            by_endpoint=self.by_endpoint,
            wall_time=wall_time,
        ) | {"message": self.stop_message}
