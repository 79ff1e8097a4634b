"""A deterministic, OpenAI-compatible stand-in teacher for tests, benches and the offline demo. Not a model.

It serves `POST /v1/chat/completions`, `GET /v1/models` and the Batch API (`/v1/files`, `/v1/batches`, see
offline_batches.py) on loopback. It reads which template it was sent from the template's `Prompt id:` line, reads the
shapes-world scene from the PNG metadata of the image in the data URL, and answers in exactly the tagged format the
parser expects, so its captions and answers are correct by construction. Like a provider's prefix cache, it bills
the longest run of a request's leading text parts (up to its first image) that it has seen before as cached tokens.
Switchable faults (429 with Retry-After, 5xx, slow replies, hangs past the client timeout, malformed sections,
refusals, prompt leakage, dropped connections; 200s with an HTML, non-JSON or non-UTF-8 body, a body trickled a byte
at a time, a reply of megabytes full of unclosed tags) exercise every failure path of the synthesis client.

    python -m recipes.tiny.offline_teacher --port 8011 [--latency 0.2] [--fault rate_limit=0.1 ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import socket
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dataset_scripts.prompt_set import marker
from recipes.tiny.offline_batches import OfflineBatches
from recipes.tiny.offline_replies import (  # noqa: F401 (chosen_question_type, detailed_answer: re-exported)
    apply_content_fault,
    between,
    chosen_question_type,
    compose_reply,
    content_texts,
    detailed_answer,
    leading_texts,
    scene_of,
)
from toolkit.cli import InputError, Parser, run


MODEL_ID = "offline-shapes-teacher"
FAULTS = (
    *("rate_limit", "server_error", "slow", "timeout", "malformed", "refusal", "leak", "drop"),
    *("html", "not_json", "not_utf8", "trickle", "huge"),
)
_BAD_BODIES = {
    "html": ("text/html; charset=utf-8", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "not_json": ("application/json", b'{"id": "chatcmpl-x", "choices": [{"message": '),
    "not_utf8": ("application/json", b'{"choices": [{"message": {"content": "\xff\xfe caf\xe9"}}]}'),
}
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: don't let them wait 40 ms
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests and benches read stdout
        return

    def _send(
        self,
        status: int,
        body: dict | bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        trickle: float = 0.0,
    ) -> None:
        """Answer; `trickle` > 0 sends the body one byte at a time, that many seconds apart."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if not trickle:
                self.wfile.write(data)
                return
            for index in range(len(data)):
                self.wfile.write(data[index : index + 1])
                self.wfile.flush()
                if self.server.teacher._stopping.wait(trickle):
                    break
            self.close_connection = True
        except OSError:  # the client gave up (timeout) or went away
            self.close_connection = True

    def _error(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, _error_body(message, kind), headers)

    def _authorised(self) -> bool:
        expected = self.server.teacher.api_key
        if expected is None or self.headers.get("Authorization") == f"Bearer {expected}":
            return True
        self._error(401, "Incorrect API key provided.", "invalid_request_error")
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        route = self.path.rstrip("/")
        if route == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "allava"}]})
        elif route.startswith(("/v1/files", "/v1/batches")):
            self._send(*self.server.teacher.batches.get(route))
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorised():
            return
        route = self.path.rstrip("/")
        if route.startswith(("/v1/files", "/v1/batches")):
            self._send(*self.server.teacher.batches.post(route, raw, self.headers.get("Content-Type", "")))
            return
        if route != "/v1/chat/completions":
            self._error(404, f"no route {self.path}", "not_found")
            return
        teacher = self.server.teacher
        sequence, fault = teacher.next_fault()
        if teacher.latency:
            time.sleep(teacher.latency_for(sequence))
        if fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault == "rate_limit":
            headers = {"Retry-After": f"{teacher.retry_after:g}"}
            self._error(429, "Rate limit reached; please retry later.", "rate_limit_error", headers)
            return
        if fault == "server_error":
            self._error(500 + 3 * (sequence % 2), "The server had an error.", "server_error")
            return
        if fault in _BAD_BODIES:
            content_type, data = _BAD_BODIES[fault]
            self._send(200, data, content_type=content_type)
            return
        if fault == "slow":
            time.sleep(teacher.slow_seconds)
        if fault == "timeout" and teacher._stopping.wait(teacher.hang_seconds):
            return  # shutting down: leave without answering
        status, payload = teacher.completion(raw, sequence, fault)
        self._send(status, payload, trickle=teacher.trickle_seconds if fault == "trickle" and status == 200 else 0.0)


def _error_body(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "code": None}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    teacher: OfflineTeacher


class OfflineTeacher:
    """The stand-in teacher on 127.0.0.1; a context manager that serves from a background thread.

    `faults` maps FAULTS names to probabilities; each request's fault is drawn from `Random(f"{seed}:{n}")` for the
    n-th request, so a run's fault sequence is reproducible. `latency` seconds are added to every request; with
    `latency_sigma` > 0 they are drawn per request from a log-normal with median `latency` (a long tail: sigma 0.8
    puts the 95th percentile at 3.7 x the median). The Batch API (files + batches) is served by `self.batches`.
    `billing_factor` scales the prompt tokens it reports (a provider that bills more than the client estimates).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        faults: dict[str, float] | None = None,
        latency: float = 0.0,
        latency_sigma: float = 0.0,
        seed: int = 0,
        retry_after: float = 0.05,
        slow_seconds: float = 0.2,
        hang_seconds: float = 3.0,
        trickle_seconds: float = 0.05,
        huge_chars: int = 4_000_000,
        billing_factor: float = 1.0,
    ) -> None:
        self.api_key = api_key
        self.latency = latency
        self.latency_sigma = latency_sigma
        self.seed = seed
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        self.trickle_seconds = trickle_seconds
        self.huge_chars = huge_chars
        self.billing_factor = billing_factor
        self.stats: Counter = Counter()
        self._lock = threading.Lock()
        self._sequence = 0
        self._prefixes: set[bytes] = set()
        self._stopping = threading.Event()
        self.set_faults(faults or {})
        self.batches = OfflineBatches(self)
        self._server = _Server((host, port), _Handler)
        self._server.teacher = self
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def set_faults(self, faults: dict[str, float]) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {FAULTS}")
        if sum(faults.values()) > 1.0 + 1e-9 or any(p < 0 for p in faults.values()):
            raise ValueError("fault probabilities must be >= 0 and sum to at most 1")
        self.faults = dict(faults)

    def completion(self, raw: bytes, sequence: int, fault: str | None = None) -> tuple[int, dict]:
        """(status, JSON body) answering one chat completion request body (live, or one line of a batch)."""
        try:
            body = json.loads(raw)
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            return 400, _error_body("the body must be JSON with a 'messages' list", "invalid_request_error")
        texts, images = content_texts(messages)
        found = next((marker(text) for text in texts if marker(text)), None)
        if found is None:
            return 400, _error_body("no 'Prompt id:' line found; this teacher only answers allava prompts", "invalid")
        template = found[0]
        scene = scene_of(images[0]) if images else None
        if template != "text" and scene is None:
            return 400, _error_body("the image carries no shapes_world scene in its PNG metadata", "invalid_request")
        prompt_text = "\n".join(texts)
        instruction = between(prompt_text, "instruction") if template == "vflan" else texts[-1].strip()
        reply = compose_reply(template, scene, instruction)
        if fault in ("malformed", "refusal", "leak"):
            reply = apply_content_fault(fault, reply, template, sequence)
        if fault == "huge":  # a runaway reply: megabytes of unclosed tags after the real one
            reply += "<start of answer>" * (self.huge_chars // 17)
        prompt_tokens = math.ceil((math.ceil(len(prompt_text) / 4) + 85 * len(images)) * self.billing_factor)
        completion_tokens = math.ceil(len(reply) / 4)
        cached_tokens = min(prompt_tokens, self.cached_tokens(leading_texts(messages)))
        request_id = hashlib.sha256(f"{self.seed}:{sequence}".encode()).hexdigest()[:24]
        return 200, {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", MODEL_ID),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens},
            },
        }

    def latency_for(self, sequence: int) -> float:
        if not self.latency_sigma:
            return self.latency
        return self.latency * math.exp(self.latency_sigma * random.Random(f"{self.seed}:latency:{sequence}").gauss())

    def cached_tokens(self, parts: list[str]) -> int:
        """Prefix caching as providers do it: the longest run of leading text parts seen before is cached."""
        digest, cached, length = hashlib.sha256(), 0, 0
        with self._lock:
            for part in parts:
                digest.update(part.encode() + b"\0")
                length += len(part)
                key = digest.digest()
                if key in self._prefixes:
                    cached = length
                self._prefixes.add(key)
        return math.ceil(cached / 4)

    def next_fault(self) -> tuple[int, str | None]:
        with self._lock:
            sequence = self._sequence
            self._sequence += 1
            self.stats["requests"] += 1
        draw = random.Random(f"{self.seed}:{sequence}").random()
        for name in FAULTS:
            draw -= self.faults.get(name, 0.0)
            if draw < 0:
                with self._lock:
                    self.stats[name] += 1
                return sequence, name
        return sequence, None

    def start(self) -> OfflineTeacher:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="offline-teacher", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the command-line use)."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def __enter__(self) -> OfflineTeacher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_fault(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if name not in FAULTS or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=PROBABILITY with NAME in {FAULTS}, got {text!r}")
    return name, float(value)


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv)


def _main(argv: list[str] | None) -> None:
    parser = Parser(
        "Serve the offline shapes-world teacher: an OpenAI-compatible stand-in for tests and the demo (not a model).",
        "python -m recipes.tiny.offline_teacher --port 8011",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011, help="0 picks a free port (printed on start)")
    parser.add_argument("--api-key-env", help="require 'Bearer <value of this env var>' (default: accept any key)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request (the median)")
    parser.add_argument(
        "--latency-sigma", type=float, default=0.0, help="log-normal spread of the latency (0: fixed; 0.8: p95 3.7x)"
    )
    parser.add_argument("--fault", type=_parse_fault, action="append", default=[], help="e.g. rate_limit=0.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-after", type=float, default=0.05, help="Retry-After seconds sent with 429s")
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        parser.error(f"environment variable {args.api_key_env} is empty")
    try:
        teacher = OfflineTeacher(
            args.host,
            args.port,
            api_key=api_key,
            faults=dict(args.fault),
            latency=args.latency,
            latency_sigma=args.latency_sigma,
            seed=args.seed,
            retry_after=args.retry_after,
        )
    except OSError as error:
        where = f"--host {args.host} --port {args.port}"
        raise InputError(f"{where}: cannot listen there ({error.strerror or error})") from None
    print(f"offline teacher (a test stand-in, not a model) listening on {teacher.base_url}", flush=True)
    teacher.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
