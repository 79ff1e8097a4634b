"""A deterministic, OpenAI-compatible stand-in teacher for tests, benches and the offline demo. Not a model.

It serves `POST /v1/chat/completions` and `GET /v1/models` on loopback. It reads which template it was sent from the
template's `Prompt id:` line, reads the shapes-world scene from the PNG metadata of the image in the data URL, and
answers in exactly the tagged format the parser expects, so its captions and answers are correct by construction.
Switchable faults (429 with Retry-After, 5xx, slow replies, hangs past the client timeout, malformed sections,
refusals, prompt leakage, dropped connections; 200s with an HTML, non-JSON or non-UTF-8 body, a body trickled a byte
at a time, a reply of megabytes full of unclosed tags) exercise every failure path of the synthesis client.

    python -m dataset_scripts.offline_teacher --port 8011 [--latency 0.2] [--fault rate_limit=0.1 ...]
"""

from __future__ import annotations

import argparse
import base64
import binascii
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

from dataset_scripts import shapes_world as world
from dataset_scripts.prompt_set import marker
from hub.cli import InputError, Parser, run


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
_REASONING = {
    "colour": "Every shape in the picture is filled with the same solid colour.",
    "shape": "All of the shapes share the same outline.",
    "count": "Counting each separate shape gives the total.",
    "position": "All of the shapes sit together in the same part of the picture.",
}
_EXTRA_QUESTION = "Are the shapes small or large?"


def detailed_answer(scene: world.Scene, qtype: str) -> str:
    """A short reasoning step, then the `ask` answer: the fact keyword appears exactly once."""
    return f"{_REASONING[qtype]} {world.ask(scene, qtype)[1]}"


def chosen_question_type(scene: world.Scene) -> str:
    """The question the teacher picks for a scene, spread evenly over QUESTION_TYPES."""
    return world.QUESTION_TYPES[scene.layout_seed % len(world.QUESTION_TYPES)]


def _tag(name: str, body: str) -> str:
    return f"<start of {name}>\n{body}\n<end of {name}>"


def _qa_sections(scene: world.Scene) -> list[str]:
    questions = [world.QUESTIONS[q] for q in world.QUESTION_TYPES] + [_EXTRA_QUESTION]
    candidates = "\n".join(f"{number}. {question}" for number, question in enumerate(questions, 1))
    qtype = chosen_question_type(scene)
    return [
        _tag("candidate questions", candidates),
        _tag("question", world.QUESTIONS[qtype]),
        _tag("answer", detailed_answer(scene, qtype)),
    ]


def _generic_text_answer(instruction: str) -> str:
    topic = " ".join(instruction.split()[:8]).rstrip("?.!")
    return (
        f"Here is a considered response to the request about {topic!r}. First, identify what is being asked and "
        "the key terms involved. Second, work through the main points one at a time, giving a short example for "
        "each. Finally, summarise the conclusion in a sentence so the answer can be checked quickly."
    )


def compose_reply(template: str, scene: world.Scene | None, instruction: str | None) -> str:
    """The correct, well-formed reply to one template (the teacher's whole 'intelligence')."""
    if template == "text":
        return world.solve_text_instruction(instruction or "") or _generic_text_answer(instruction or "")
    if scene is None:
        raise ValueError(f"template {template!r} needs a shapes-world scene")
    description = _tag("description", world.describe(scene))
    if template == "caption":
        return description
    if template in ("qa_from_caption", "qa_direct"):
        return "\n\n".join(_qa_sections(scene))
    if template == "caption_qa":
        return "\n\n".join([description, *_qa_sections(scene)])
    qtype = world.question_type(instruction or "")
    answer = detailed_answer(scene, qtype) if qtype else f"Looking at the picture: {world.describe(scene)}"
    return "\n\n".join([description, _tag("detailed answer", answer)])


def _apply_content_fault(fault: str, reply: str, template: str, sequence: int) -> str:
    if fault == "refusal":
        return "I'm sorry, but I can't help with that request."
    if fault == "leak":
        leaked = "As the description above says, this follows directly."
        for end in ("<end of answer>", "<end of detailed answer>"):
            if end in reply:
                return reply.replace(end, f"{leaked}\n{end}")
        echo = f"Prompt id: allava/{template}/v1"  # nothing answer-like: echo the prompt itself
        return reply.replace(">\n", f">\n{echo} ", 1) if template != "text" else f"{echo}\n{reply}"
    if template == "text":  # malformed: a plain answer has no structure to break, so send nothing usable
        return ""
    if "<start of candidate questions>" in reply and sequence % 2:
        return "\n".join(line for line in reply.splitlines() if not line.startswith("5. "))
    last_end = reply.rfind("<end of ")
    return reply[:last_end]  # the final closing tag is missing


def _content_texts(messages: list) -> tuple[list[str], list[str]]:
    """(all text parts, all image URLs) of a chat request."""
    texts, images = [], []
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") == "image_url":
                url = part.get("image_url")
                images.append(url.get("url", "") if isinstance(url, dict) else str(url))
    return texts, images


def _scene_of(url: str) -> world.Scene | None:
    if not url.startswith("data:") or ";base64," not in url:
        return None
    try:
        return world.scene_from_image(base64.b64decode(url.split(";base64,", 1)[1], validate=True))
    except (binascii.Error, ValueError):
        return None


def _between(text: str, name: str) -> str | None:
    start, end = f"<start of {name}>", f"<end of {name}>"
    if start in text and end in text:
        return text.split(start, 1)[1].split(end, 1)[0].strip()
    return None


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
        self._send(status, {"error": {"message": message, "type": kind, "code": None}}, headers)

    def _authorised(self) -> bool:
        expected = self.server.teacher.api_key
        if expected is None or self.headers.get("Authorization") == f"Bearer {expected}":
            return True
        self._error(401, "Incorrect API key provided.", "invalid_request_error")
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "allava"}]})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}", "not_found")
            return
        teacher = self.server.teacher
        sequence, fault = teacher.next_fault()
        if teacher.latency:
            time.sleep(teacher.latency)
        try:
            body = json.loads(raw)
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            self._error(400, "the body must be JSON with a 'messages' list", "invalid_request_error")
            return
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
        texts, images = _content_texts(messages)
        found = next((marker(text) for text in texts if marker(text)), None)
        if found is None:
            self._error(400, "no 'Prompt id:' line found; this teacher only answers allava prompts", "invalid_request")
            return
        template = found[0]
        scene = _scene_of(images[0]) if images else None
        if template != "text" and scene is None:
            self._error(400, "the image carries no shapes_world scene in its PNG metadata", "invalid_request_error")
            return
        prompt_text = "\n".join(texts)
        instruction = _between(prompt_text, "instruction") if template == "vflan" else texts[-1].strip()
        reply = compose_reply(template, scene, instruction)
        if fault in ("malformed", "refusal", "leak"):
            reply = _apply_content_fault(fault, reply, template, sequence)
        if fault == "huge":  # a runaway reply: megabytes of unclosed tags after the real one
            reply += "<start of answer>" * (teacher.huge_chars // 17)
        prompt_tokens = math.ceil((math.ceil(len(prompt_text) / 4) + 85 * len(images)) * teacher.billing_factor)
        completion_tokens = math.ceil(len(reply) / 4)
        request_id = hashlib.sha256(f"{teacher.seed}:{sequence}".encode()).hexdigest()[:24]
        self._send(
            200,
            {
                "id": f"chatcmpl-{request_id}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", MODEL_ID),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
            trickle=teacher.trickle_seconds if fault == "trickle" else 0.0,
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    teacher: OfflineTeacher


class OfflineTeacher:
    """The stand-in teacher on 127.0.0.1; a context manager that serves from a background thread.

    `faults` maps FAULTS names to probabilities; each request's fault is drawn from `Random(f"{seed}:{n}")` for the
    n-th request, so a run's fault sequence is reproducible. `latency` seconds are added to every request.
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
        self._stopping = threading.Event()
        self.set_faults(faults or {})
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
        "python -m dataset_scripts.offline_teacher --port 8011",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011, help="0 picks a free port (printed on start)")
    parser.add_argument("--api-key-env", help="require 'Bearer <value of this env var>' (default: accept any key)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
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
