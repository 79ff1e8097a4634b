"""The offline teacher's Batch API: `/v1/files` and `/v1/batches`, with the faults a real batch run meets.

It follows OpenAI's documented Batch API: files are uploaded (`purpose=batch`) and read back from
`/v1/files/<id>/content`; a batch goes `validating` -> `in_progress` -> `finalizing` -> `completed` (or `failed` when
its input fails validation, `expired`, `cancelling` -> `cancelled`), one step per poll once due; its results are an
output file (the 200s) and an error file (every other answer, and requests left unanswered), lines in any order;
`GET /v1/batches` pages newest first (`limit`, `after`, `has_more`); an unknown batch is a 404 `No such batch`.

Uploaded JSONL files are kept in memory. A batch is worked off `seconds` after it is created (`slow` batches, by
creation index, take `slow_seconds` longer). Faults: each request fails with probability `error_rate` (a 500 in the
error file); `line_status(request line)` may answer a request with another status and message instead (e.g. a 400
"Invalid image."); `expire` batches (by creation index) expire with only their first half answered (the rest in the
error file as `batch_expired`); `cancel` batches are cancelled while they run (none answered); `validation_error`
(`{code, message, line, param}`) fails every batch at validation; `control_faults` answers that many creates
(`create_lost`: made, but the answer is a 500) or polls (`retrieve`) with a 500. For tests it counts, per
`custom_id`, how often it was submitted in a batch (`submissions`) and how often it was answered and billed
(`billed`), and how many pages of the batch list were asked for (`list_pages`). The teacher's content faults
(malformed, refusal, leak, huge) apply to batch requests too.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qs


MAX_REQUESTS = 50_000
CONTENT_FAULTS = ("malformed", "refusal", "leak", "huge")


def _error(status: int, message: str) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "code": None}}


def _multipart_file(body: bytes, content_type: str) -> tuple[bytes, str] | None:
    """(file bytes, purpose) of a multipart/form-data upload, or None."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    data, purpose = None, ""
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        if name == "file":
            data = part.get_payload(decode=True)
        elif name == "purpose":
            purpose = part.get_payload(decode=True).decode()
    return (data, purpose) if data is not None else None


class Answerer(Protocol):
    """What the batches need of the offline teacher (offline_teacher.OfflineTeacher), which owns them."""

    seed: int

    def next_fault(self) -> tuple[int, str | None]: ...

    def completion(self, raw: bytes, sequence: int, fault: str | None = None) -> tuple[int, dict]: ...


class OfflineBatches:
    """Files and batches of one offline teacher (thread-safe: the server answers from many threads)."""

    def __init__(self, teacher: Answerer) -> None:
        self.teacher = teacher
        self.seconds = 0.0
        self.slow: set[int] = set()
        self.slow_seconds = 1.0
        self.expire: set[int] = set()
        self.cancel: set[int] = set()
        self.error_rate = 0.0
        self.line_status: Callable[[dict], tuple[int, str] | None] | None = None
        self.validation_error: dict | None = None
        self.list_pages = 0
        self.control_faults: Counter = Counter()  # "create_lost" / "retrieve": that many such calls answer 500
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.submissions: Counter = Counter()
        self.billed: Counter = Counter()
        self._ids = 0
        self._lock = threading.Lock()

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{hashlib.sha256(f'{self.teacher.seed}:{self._ids}'.encode()).hexdigest()[:20]}"

    def post(self, route: str, raw: bytes, content_type: str) -> tuple[int, dict]:
        if route == "/v1/files":
            upload = _multipart_file(raw, content_type)
            if upload is None:
                return _error(400, "expected a multipart upload with a 'file' field")
            with self._lock:
                file_id = self._new_id("file")
                self.files[file_id] = upload[0]
            return 200, {"id": file_id, "object": "file", "bytes": len(upload[0]), "purpose": upload[1] or "batch"}
        parts = route.split("/")
        if len(parts) == 5 and parts[2] == "batches" and parts[4] == "cancel":
            with self._lock:
                batch = self.batches.get(parts[3])
                if batch is None:
                    return _error(404, f"No such batch: {parts[3]}")
                if batch["status"] in ("validating", "in_progress", "finalizing"):
                    batch["status"] = "cancelling"
                return 200, self._public(batch)
        if route == "/v1/batches":
            try:
                body = json.loads(raw)
                lines = self.files[body["input_file_id"]].splitlines()
            except (ValueError, KeyError, TypeError):
                return _error(400, "input_file_id must name an uploaded file")
            if len(lines) > MAX_REQUESTS:
                return _error(400, f"a batch holds at most {MAX_REQUESTS} requests")
            with self._lock:
                index = len(self.batches)
                batch_id = self._new_id("batch")
                for line in lines:
                    self.submissions[json.loads(line)["custom_id"]] += 1
                delay = self.seconds + (self.slow_seconds if index in self.slow else 0.0)
                self.batches[batch_id] = {
                    "id": batch_id,
                    "object": "batch",
                    "endpoint": body.get("endpoint"),
                    "input_file_id": body["input_file_id"],
                    "completion_window": body.get("completion_window", "24h"),
                    "status": "validating",
                    "created_at": int(time.time()),
                    "output_file_id": None,
                    "error_file_id": None,
                    "errors": None,
                    "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                    "_index": index,
                    "_ready": time.monotonic() + delay,
                }
            if self._take("create_lost"):  # created, but the answer is lost: the client must not create it again
                return _error(500, "The server had an error while processing your request.")
            return 200, self._public(self.batches[batch_id])
        return _error(404, f"no route {route}")

    def _take(self, fault: str) -> bool:
        with self._lock:
            if self.control_faults[fault] <= 0:
                return False
            self.control_faults[fault] -= 1
            return True

    def get(self, route: str) -> tuple:
        path, _, query = route.partition("?")
        parts = path.split("/")[2:]  # files|batches, id, [content]
        if parts[0] == "files" and len(parts) == 3 and parts[2] == "content" and parts[1] in self.files:
            return 200, self.files[parts[1]], None, "application/jsonl"
        if parts == ["batches"]:
            return 200, self._page(parse_qs(query))
        if parts[0] == "batches" and len(parts) == 2:
            if self._take("retrieve"):
                return _error(500, "The server had an error while processing your request.")
            with self._lock:
                batch = self.batches.get(parts[1])
                if batch is None:
                    return _error(404, f"No such batch: {parts[1]}")
                self._advance(batch)
                return 200, self._public(batch)
        return _error(404, f"no route {route}")

    def _page(self, query: dict) -> dict:
        """One page of the batch list, newest first, after the batch `after` (the SDK pages on by itself)."""
        limit = int(query.get("limit", ["20"])[0])
        with self._lock:
            self.list_pages += 1
            newest_first = [self._public(batch) for batch in reversed(list(self.batches.values()))]
        after = query.get("after", [None])[0]
        start = next((i + 1 for i, batch in enumerate(newest_first) if batch["id"] == after), 0)
        page = newest_first[start : start + limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(newest_first),
        }

    def _advance(self, batch: dict) -> None:
        """One step of the batch's life, taken when it is polled (under the lock)."""
        status = batch["status"]
        if status == "validating":
            if self.validation_error is not None:
                batch["status"] = "failed"
                batch["errors"] = {"object": "list", "data": [dict(self.validation_error)]}
            else:
                batch["status"] = "in_progress"
        elif status == "in_progress" and batch["_index"] in self.cancel:  # as if someone cancelled it
            batch["status"] = "cancelling"
        elif status == "in_progress" and time.monotonic() >= batch["_ready"]:
            batch["status"] = "finalizing"
        elif status == "finalizing":
            self._finish(batch)
        elif status == "cancelling":
            self._finish(batch, cancelled=True)

    @staticmethod
    def _public(batch: dict) -> dict:
        return {key: value for key, value in batch.items() if not key.startswith("_")}

    def _finish(self, batch: dict, cancelled: bool = False) -> None:
        """Answer the batch's requests (under the lock): results, per-request errors, expiry, cancellation."""
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].splitlines()]
        expired = batch["_index"] in self.expire
        answered = 0 if cancelled else len(lines) // 2 if expired else len(lines)
        output, errors = [], []
        for number, line in enumerate(lines):
            custom_id = line["custom_id"]
            draw = random.Random(f"{self.teacher.seed}:{custom_id}:{self.submissions[custom_id]}").random()
            if number >= answered:
                code = "batch_cancelled" if cancelled else "batch_expired"
                error = {"code": code, "message": "This request could not be executed before the batch ended."}
                errors.append({"id": f"req-{custom_id}", "custom_id": custom_id, "response": None, "error": error})
                continue
            chosen = self.line_status(line) if self.line_status is not None else None
            if chosen is not None:
                body = {"error": {"message": chosen[1], "type": "invalid_request_error", "code": None}}
                response = {"status_code": chosen[0], "request_id": "r", "body": body}
                errors.append({"id": f"req-{custom_id}", "custom_id": custom_id, "response": response, "error": None})
                continue
            if draw < self.error_rate:
                body = {"error": {"message": "The server had an error.", "type": "server_error"}}
                response = {"status_code": 500, "request_id": "r", "body": body}
                errors.append({"id": f"req-{custom_id}", "custom_id": custom_id, "response": response, "error": None})
                continue
            sequence, fault = self.teacher.next_fault()  # content faults only: a batch has no connection to drop
            fault = fault if fault in CONTENT_FAULTS else None
            status, body = self.teacher.completion(json.dumps(line["body"]).encode(), sequence, fault)
            response = {"status_code": status, "request_id": f"r{sequence}", "body": body}
            (output if status == 200 else errors).append(
                {"id": f"req-{custom_id}", "custom_id": custom_id, "response": response, "error": None}
            )
            if status == 200:
                self.billed[custom_id] += 1
        shuffle = random.Random(f"{self.teacher.seed}:{batch['id']}")
        for name, rows in (("output_file_id", output), ("error_file_id", errors)):
            shuffle.shuffle(rows)  # the documented API keeps no order
            if rows:
                file_id = self._new_id("file")
                self.files[file_id] = "".join(json.dumps(row) + "\n" for row in rows).encode()
                batch[name] = file_id
        batch["status"] = "cancelled" if cancelled else "expired" if expired else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}
