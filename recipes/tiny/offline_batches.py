"""The offline teacher's Batch API: `/v1/files` and `/v1/batches`, with the faults a real batch run meets.

Uploaded JSONL files are kept in memory. A batch finishes `seconds` after it is created (`slow` batches, by creation
index, take `slow_seconds` longer); it is worked off when first polled after that. Faults: each request fails with
probability `error_rate` (a 500 in the error file), and `expire` batches (by creation index) expire with only their
first half answered (the rest in the error file as `batch_expired`). For tests it counts, per `custom_id`, how often
it was submitted in a batch (`submissions`) and how often it was answered and billed (`billed`). The teacher's
content faults (malformed, refusal, leak, huge) apply to batch requests too.
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
from typing import Protocol


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
        self.error_rate = 0.0
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
                    "status": "in_progress",
                    "created_at": int(time.time()),
                    "output_file_id": None,
                    "error_file_id": None,
                    "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                    "_index": index,
                    "_ready": time.monotonic() + delay,
                }
            return 200, self._public(self.batches[batch_id])
        return _error(404, f"no route {route}")

    def get(self, route: str) -> tuple:
        parts = route.split("/")[2:]  # files|batches, id, [content]
        if parts[0] == "files" and len(parts) == 3 and parts[2] == "content" and parts[1] in self.files:
            return 200, self.files[parts[1]], None, "application/jsonl"
        if parts == ["batches"] or route.startswith("/v1/batches?"):
            with self._lock:
                listed = [self._public(batch) for batch in reversed(list(self.batches.values()))]
            return 200, {"object": "list", "data": listed, "has_more": False}
        if parts[0] == "batches" and len(parts) == 2 and parts[1] in self.batches:
            with self._lock:
                batch = self.batches[parts[1]]
                if batch["status"] == "in_progress" and time.monotonic() >= batch["_ready"]:
                    self._finish(batch)
                return 200, self._public(batch)
        return _error(404, f"no route {route}")

    @staticmethod
    def _public(batch: dict) -> dict:
        return {key: value for key, value in batch.items() if not key.startswith("_")}

    def _finish(self, batch: dict) -> None:
        """Answer the batch's requests (under the lock): results, per-request errors, expiry."""
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].splitlines()]
        expired = batch["_index"] in self.expire
        answered = len(lines) // 2 if expired else len(lines)
        output, errors = [], []
        for number, line in enumerate(lines):
            custom_id = line["custom_id"]
            draw = random.Random(f"{self.teacher.seed}:{custom_id}:{self.submissions[custom_id]}").random()
            if number >= answered:
                error = {"code": "batch_expired", "message": "This request could not be executed before expiry."}
                errors.append({"id": f"req-{custom_id}", "custom_id": custom_id, "response": None, "error": error})
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
        for name, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                file_id = self._new_id("file")
                self.files[file_id] = "".join(json.dumps(row) + "\n" for row in rows).encode()
                batch[name] = file_id
        batch["status"] = "expired" if expired else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}
