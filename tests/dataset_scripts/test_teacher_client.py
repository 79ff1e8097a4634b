import asyncio

import httpx2
import openai
import pytest

from dataset_scripts.prompt_set import load_prompt_set
from dataset_scripts.sections import reply_char_limit
from dataset_scripts.tasks import TaskSpec
from dataset_scripts.teacher_client import (
    FatalAPIError,
    StatusError,
    TeacherClient,
    TransientAPIError,
    error_message,
    scrub,
)
from tests.dataset_scripts.helpers_synthesis import API_KEY


def client(base_url="http://127.0.0.1:9/v1", **kwargs):
    options = dict(sampling={"max_tokens": 16}, timeout=1.0, max_retries=1, concurrency=40, backoff_base=0.001)
    return TeacherClient(base_url=base_url, api_key=API_KEY, model="m", **(options | kwargs))


def status_error(cls, status, headers=None, message="nope"):
    response = httpx2.Response(status, headers=headers or {}, request=httpx2.Request("POST", "http://x/v1"))
    return cls(message, response=response, body=None)


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (openai.BadRequestError, 400),
        (openai.AuthenticationError, 401),
        (openai.PermissionDeniedError, 403),
        (openai.NotFoundError, 404),
    ],
)
def test_fatal_statuses_stop_and_scrub_the_key(cls, status):
    with pytest.raises(FatalAPIError) as error:
        client()._classify(status_error(cls, status, message=f"bad header Authorization: Bearer {API_KEY}"))
    assert str(status) in str(error.value) and API_KEY not in str(error.value)


def test_retriable_statuses_carry_retry_after():
    teacher = client()
    assert teacher._classify(status_error(openai.RateLimitError, 429, {"retry-after": "1.5"})) == ("rate_limit", 1.5)
    assert teacher._classify(status_error(openai.InternalServerError, 503)) == ("http_503", None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_the_direct_path_stops_on_the_same_statuses_as_the_sdk(status):
    error = StatusError(status, {}, f"bad header Authorization: Bearer {API_KEY}")
    with pytest.raises(FatalAPIError) as fatal:
        client()._classify(error)
    assert f"teacher answered {status}" in str(fatal.value) and API_KEY not in str(fatal.value)


def test_the_direct_path_retries_rate_limits_and_server_errors_with_retry_after():
    teacher = client()
    assert teacher._classify(StatusError(429, {"Retry-After-Ms": "250"}, "slow down")) == ("rate_limit", 0.25)
    assert teacher._classify(StatusError(502, {}, "bad gateway")) == ("http_502", None)


def test_error_message_reads_openai_style_bodies_and_falls_back_to_text():
    assert error_message(b'{"error": {"message": "Incorrect API key provided.", "type": "x"}}') == (
        "Incorrect API key provided."
    )
    assert error_message(b"<html>502 Bad Gateway</html>") == "<html>502 Bad Gateway</html>"
    assert error_message(b"") == "(empty body)"


def test_unreachable_server_gives_up_after_bounded_retries():
    teacher = client()

    async def call_then_close():
        try:
            await teacher.complete([{"role": "user", "content": "hi"}], 10)
        finally:
            await teacher.aclose()

    with pytest.raises(TransientAPIError) as error:
        asyncio.run(call_then_close())
    assert error.value.kind == "connection" and teacher.stats.retries["connection"] == 1
    assert "Cannot connect to host 127.0.0.1:9" in str(error.value)  # not the transport's "timed out"
    assert API_KEY not in str(error.value)


def test_scrub_removes_keys_and_bearer_tokens():
    text = f"key={API_KEY} Authorization: Bearer abc.def sk-proj-ABCDEFGH12345678"
    cleaned = scrub(text, [API_KEY])
    assert API_KEY not in cleaned and "abc.def" not in cleaned and "ABCDEFGH" not in cleaned


def text_request():
    spec = TaskSpec("text", "one-call", "m", load_prompt_set())
    messages = spec.messages("text", None, "What is 2 plus 5?", None)
    return messages, spec.estimate_prompt_tokens(messages, None)


@pytest.mark.parametrize(("fault", "detail"), [("html", "text/html"), ("not_json", "not JSON"), ("not_utf8", "UTF-8")])
def test_a_200_that_is_no_chat_completion_is_a_retried_fault(teacher, fault, detail):
    teacher.set_faults({fault: 1.0})
    client_ = client(teacher.base_url, max_retries=2)
    with pytest.raises(TransientAPIError) as error:
        asyncio.run(client_.complete(*text_request()))
    assert error.value.kind == "invalid_response" and detail in str(error.value)
    assert client_.stats.retries["invalid_response"] == 2 and teacher.stats["requests"] == 3


def test_timeout_is_a_deadline_for_the_whole_request(teacher):
    teacher.set_faults({"trickle": 1.0})  # a byte every 50 ms: never idle for a whole per-read timeout
    teacher.trickle_seconds = 0.05
    client_ = client(teacher.base_url, timeout=0.5, max_retries=0)

    async def bounded():  # the outer bound only keeps a regression from hanging the suite (a trickle takes minutes)
        return await asyncio.wait_for(client_.complete(*text_request()), 60)

    with pytest.raises(TransientAPIError) as error:
        asyncio.run(bounded())
    assert error.value.kind == "timeout"


def test_a_body_larger_than_any_reply_could_be_is_refused_unparsed(teacher):
    teacher.set_faults({"huge": 1.0})  # a 4 MB reply
    client_ = client(teacher.base_url, max_retries=0, max_reply_chars=reply_char_limit(300))

    async def huge_then_normal():  # one event loop, as in a run: the client's connections belong to it
        with pytest.raises(TransientAPIError) as error:
            await client_.complete(*text_request())
        teacher.set_faults({})
        reply = await client_.complete(*text_request())
        await client_.aclose()
        return error, reply

    error, reply = asyncio.run(huge_then_normal())
    assert error.value.kind == "invalid_response" and "bytes" in str(error.value)
    assert reply.text == "2 plus 5 is 7."


def test_each_answered_request_reports_its_latency_and_failed_attempts_do_not(teacher):
    seen: list[float] = []
    client_ = client(teacher.base_url, max_retries=1, on_latency=seen.append)

    async def failing_then_slow():  # one event loop, as in a run
        teacher.set_faults({"server_error": 1.0})
        with pytest.raises(TransientAPIError):
            await client_.complete(*text_request())
        failed = list(seen)
        teacher.set_faults({})
        teacher.latency = 0.2
        await client_.complete(*text_request())
        await client_.aclose()
        return failed

    assert asyncio.run(failing_then_slow()) == []
    assert len(seen) == 1 and seen[0] >= 0.2  # the teacher's added latency is part of what is reported
