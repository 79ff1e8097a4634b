"""A loopback OpenAI-compatible judge (stdlib ThreadingHTTPServer) whose replies a test scripts.

`responder(request_json, call_number)` returns either reply text (a 200 chat completion) or `(status, text)` for
an HTTP error. Every request is kept (with its Authorization header) so tests can check what the judge was sent.
"""

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def prompt_text(request: dict) -> str:
    """All text of the request's messages, joined."""
    texts = []
    for message in request["messages"]:
        content = message["content"]
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(part["text"] for part in content if part.get("type") == "text")
    return "\n".join(texts)


def default_reply(request: dict, call_number: int) -> str:
    """A well-formed verdict for whichever of our judge prompts this is."""
    text = prompt_text(request)
    if "[[A]]" in text:
        return "Reply A is more helpful.\n[[A]]"
    if "between 0.0 and 1.0" in text:
        return "0.4"
    # The optional GPT step of rule-scored benchmarks (MMBench matching, MathVista extraction, grading).
    for ask, reply in (
        ("single letter alone", "A"),
        ("extracted answer alone", "3"),
        ("correct, incorrect or unclear", "correct"),
        ("one word: yes or no", "yes"),
    ):
        if ask in text:
            return reply
    return "8 6\nAssistant 1 is more accurate."


class FakeJudge:
    def __init__(self, responder: Callable[[dict, int], object] = default_reply):
        self.responder = responder
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge._lock:
                    judge.requests.append(body)
                    judge.headers.append({key.lower(): value for key, value in self.headers.items()})
                    call_number = len(judge.requests)
                answer = judge.responder(body, call_number)
                status, text = answer if isinstance(answer, tuple) else (200, answer)
                if status == 200:
                    payload = {
                        "id": f"chatcmpl-{call_number}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                else:
                    payload = {"error": {"message": text, "type": "server_error", "code": status}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("retry-after-ms", "1")  # keep the client's retries fast
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeJudge":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
