import json
import random
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from dataset_scripts.images import prepare
from dataset_scripts.prompt_set import load_prompt_set
from dataset_scripts.sections import Rejected, parse_reply
from dataset_scripts.tasks import TaskSpec
from recipes.tiny import shapes_world as world
from recipes.tiny.offline_teacher import FAULTS, MODEL_ID, OfflineTeacher, detailed_answer
from tests.dataset_scripts.helpers_synthesis import API_KEY, REPO


SCENE = world.random_scene(random.Random(11))
IMAGE = prepare(world.png_bytes(SCENE), 768, 10**6)
PROMPTS = load_prompt_set()


def post(teacher, body, key=API_KEY, timeout=5.0):
    request = urllib.request.Request(
        teacher.base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def ask(teacher, template, instruction=None, description=None, key=API_KEY):
    mode = {"vflan": "vflan", "text": "text"}.get(template, "caption-qa")
    spec = TaskSpec(mode, "one-call", "m", PROMPTS)
    messages = spec.messages(template, None if template == "text" else IMAGE, instruction, description)
    return post(teacher, {"model": "whatever", "messages": messages}, key)


def test_models_and_auth(teacher):
    request = urllib.request.Request(teacher.base_url + "/models", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["data"][0]["id"] == MODEL_ID
    status, _, body = ask(teacher, "caption_qa", key="wrong")
    assert status == 401 and "API key" in body["error"]["message"]
    assert teacher.base_url.startswith("http://127.0.0.1:") and teacher.base_url.endswith("/v1")


@pytest.mark.parametrize("template", ["caption_qa", "caption", "qa_from_caption", "qa_direct"])
def test_every_image_template_is_answered_correctly(teacher, template):
    status, _, body = ask(teacher, template, description=world.describe(SCENE))
    assert status == 200 and body["usage"]["prompt_tokens"] > 85 and body["usage"]["completion_tokens"] > 0
    fields = parse_reply(template, body["choices"][0]["message"]["content"])
    if "description" in fields:
        assert fields["description"] == world.describe(SCENE)
    if "answer" in fields:
        qtype = world.question_type(fields["question"])
        assert world.match_keyword(fields["answer"], qtype) == world.answer_keyword(SCENE, qtype)


def test_vflan_answers_the_given_instruction(teacher):
    for qtype in world.QUESTION_TYPES:
        question, _ = world.ask(SCENE, qtype)
        _, _, body = ask(teacher, "vflan", instruction=question)
        fields = parse_reply("vflan", body["choices"][0]["message"]["content"])
        assert fields["answer"] == detailed_answer(SCENE, qtype)
        assert world.match_keyword(fields["answer"], qtype) == world.answer_keyword(SCENE, qtype)
    _, _, body = ask(teacher, "vflan", instruction="Write a haiku about this.")
    assert parse_reply("vflan", body["choices"][0]["message"]["content"])["answer"]


def test_text_mode_solves_known_instructions_and_answers_others(teacher):
    _, _, body = ask(teacher, "text", instruction="What is 6 times 7?")
    assert body["choices"][0]["message"]["content"] == "6 times 7 is 42."
    _, _, body = ask(teacher, "text", instruction="Explain photosynthesis.")
    assert parse_reply("text", body["choices"][0]["message"]["content"])["answer"]


def test_requests_it_cannot_answer_are_400(teacher):
    status, _, body = post(teacher, {"model": "m", "messages": [{"role": "user", "content": "hello"}]})
    assert status == 400 and "Prompt id" in body["error"]["message"]
    small = prepare(world.png_bytes(SCENE), 64, 10**6)  # downscaled: metadata gone
    messages = TaskSpec("caption-qa", "one-call", "m", PROMPTS).messages("caption_qa", small)
    status, _, body = post(teacher, {"model": "m", "messages": messages})
    assert status == 400 and "shapes_world" in body["error"]["message"]


def test_http_faults():
    with OfflineTeacher(faults={"rate_limit": 1.0}, retry_after=0.7) as teacher:
        status, headers, _ = ask(teacher, "caption")
        assert status == 429 and float(headers["Retry-After"]) == 0.7
        teacher.set_faults({"server_error": 1.0})
        assert ask(teacher, "caption")[0] in (500, 503)
        teacher.set_faults({"drop": 1.0})
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            ask(teacher, "caption")
        teacher.hang_seconds = 1.0
        teacher.set_faults({"timeout": 1.0})
        with pytest.raises((TimeoutError, urllib.error.URLError, OSError)):
            post(teacher, {"model": "m", "messages": []}, timeout=0.3)
        assert teacher.stats["rate_limit"] == 1 and teacher.stats["drop"] == 1
        with pytest.raises(ValueError):
            teacher.set_faults({"meteor": 0.1})


@pytest.mark.parametrize(("fault", "reason"), [("malformed", None), ("refusal", "refusal"), ("leak", "leakage")])
def test_content_faults_fail_validation(fault, reason):
    with OfflineTeacher(faults={fault: 1.0}) as teacher:
        for template in ("caption_qa", "caption", "text"):
            status, _, body = ask(teacher, template, instruction="What is 1 plus 1?")
            assert status == 200
            with pytest.raises(Rejected) as error:
                parse_reply(template, body["choices"][0]["message"]["content"])
            assert reason is None or error.value.reason == reason


def test_fault_sequence_is_reproducible():
    draws = []
    for _ in range(2):
        with OfflineTeacher(faults={"rate_limit": 0.3, "server_error": 0.2}, seed=4) as teacher:
            draws.append([teacher.next_fault()[1] for _ in range(40)])
    assert draws[0] == draws[1] and set(draws[0]) == {None, "rate_limit", "server_error"}
    assert set(FAULTS) >= {"rate_limit", "server_error", "slow", "timeout", "malformed", "refusal", "drop"}


def test_command_line_server():
    process = subprocess.Popen(
        [sys.executable, "-m", "recipes.tiny.offline_teacher", "--port", "0", "--latency", "0.01"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "not a model" in line
        url = line.rsplit(" ", 1)[1].strip()
        with urllib.request.urlopen(url + "/models", timeout=5) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
