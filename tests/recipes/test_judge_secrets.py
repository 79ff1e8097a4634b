"""The judge never stores or prints its API key, even when the endpoint echoes it back."""

import traceback

import pytest

from recipes.benchmarks.judge import Judge, JudgeConfigError, JudgeSettings, parse_score_pair
from tests.recipes.fake_judge import FakeJudge


KEY = "sk-judge-Secret0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Score these two answers."}]


@pytest.fixture
def settings(monkeypatch):
    def make(url: str) -> JudgeSettings:
        return JudgeSettings(
            model="judge", base_url=url, api_key_env="JUDGE_TEST_KEY", http_retries=0, parse_retries=0
        )

    monkeypatch.setenv("JUDGE_TEST_KEY", KEY)
    return make


def test_failed_and_echoing_replies_are_recorded_without_the_key(settings):
    def responder(request, call):
        return (500, f"upstream refused the key {KEY}") if call == 1 else f"8 6\nYou sent {KEY}, by the way."

    with FakeJudge(responder) as fake:
        judge = Judge(settings(fake.url))
        failed = judge.ask(MESSAGES, parse_score_pair)
        scored = judge.ask(MESSAGES, parse_score_pair)
    assert failed["error"].startswith("InternalServerError: ") and "***" in failed["error"]
    assert scored["score"] == 6 and "***" in scored["reply"]
    assert KEY not in repr(failed) and KEY not in repr(scored)


def test_a_rejected_key_stops_with_one_scrubbed_message(settings):
    with FakeJudge(lambda request, call: (401, f"Incorrect API key provided: {KEY}")) as fake:
        judge = Judge(settings(fake.url))
        with pytest.raises(JudgeConfigError) as error:
            judge.ask(MESSAGES, parse_score_pair)
    printed = "".join(traceback.format_exception(error.value))
    assert "AuthenticationError" in printed and "***" in printed and KEY not in printed
