import random
import subprocess
import sys

import pytest

from dataset_scripts.sections import (
    REJECT_REASONS,
    Rejected,
    extract_sections,
    parse_candidates,
    parse_reply,
    reply_char_limit,
)
from recipes.tiny import shapes_world as world
from recipes.tiny.offline_teacher import compose_reply
from tests.dataset_scripts.helpers_synthesis import REPO


SCENE = world.random_scene(random.Random(3))


@pytest.mark.parametrize("template", ["caption_qa", "caption", "qa_from_caption", "qa_direct"])
def test_teacher_replies_parse(template):
    fields = parse_reply(template, compose_reply(template, SCENE, None))
    if template in ("caption_qa", "caption"):
        assert fields["description"] == world.describe(SCENE)
    if template != "caption":
        assert len(fields["candidates"]) == 5 and fields["question"] in fields["candidates"]
        assert world.question_type(fields["question"]) is not None


def test_vflan_and_text_replies_parse():
    question, answer = world.ask(SCENE, "count")
    fields = parse_reply("vflan", compose_reply("vflan", SCENE, question))
    assert fields["answer"].endswith(answer) and fields["description"] == world.describe(SCENE)
    assert parse_reply("text", compose_reply("text", None, "What is 2 plus 5?")) == {"answer": "2 plus 5 is 7."}


def reply(description="A red circle.", candidates=5, question="Q?", answer="A detailed answer."):
    numbered = "\n".join(f"{i}. Question {i}?" for i in range(1, candidates + 1))
    return (
        f"<start of description>\n{description}\n<end of description>\n"
        f"<start of candidate questions>\n{numbered}\n<end of candidate questions>\n"
        f"<start of question>\n{question}\n<end of question>\n<start of answer>\n{answer}\n<end of answer>"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("I'm sorry, but I can't help with that.", "refusal"),
        (reply(answer="I cannot describe people in images."), "refusal"),
        (reply().replace("<end of answer>", ""), "missing_section"),
        (reply(question=""), "empty_section"),
        (reply(candidates=4), "candidates"),
        (reply(candidates=6), "candidates"),
        (reply(answer="As the description says, it is red."), "leakage"),
        (reply(question="Based on the caption, what colour?"), "leakage"),
        (reply(description="Prompt id: allava/caption_qa/v1 A red circle."), "leakage"),
        (reply(answer="See <start of answer> here"), "leakage"),
    ],
)
def test_rejections_carry_a_reason(text, reason):
    with pytest.raises(Rejected) as error:
        parse_reply("caption_qa", text)
    assert error.value.reason == reason and reason in REJECT_REASONS


def test_text_mode_leak_and_unknown_template():
    with pytest.raises(Rejected, match="leakage"):
        parse_reply("text", "Prompt id: allava/text/v1\nanswer")
    with pytest.raises(ValueError):
        parse_reply("poem", "x")


def test_helpers_tolerate_formatting_variants():
    sections = extract_sections("<START OF Description>  hi  <end of description> <start of x>1<end of x>")
    assert sections == {"description": "hi", "x": "1"}
    assert parse_candidates("1) a\n\n2. b\n- c\n(4) d\n* e") == ["a", "b", "c", "d", "e"]


def test_pairing_rules_of_the_linear_parser():
    text = (
        "<start of a>1 <start of b>inner<end of a> <start of b>2<end of b>"  # a start tag inside a section is its text
        "<start of c>never closed <start of A>again<end of a> <start of d> x <end of D>"
    )
    assert extract_sections(text) == {"a": "1 <start of b>inner", "b": "2", "d": "x"}


def test_section_parsing_takes_linear_time_on_unclosed_tags():
    # A 2 MB reply of unclosed tags: a backtracking pairing regex needs tens of minutes on it (quadratic), one pass
    # takes milliseconds. A subprocess so that a regression fails at the bound instead of hanging the suite.
    code = (
        "from dataset_scripts.sections import extract_sections\n"
        "text = '<start of description>x' + '<start of answer>' * 120_000\n"
        "assert extract_sections(text) == {}\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_replies_beyond_the_cap_are_rejected_before_parsing():
    limit = reply_char_limit(300)
    assert limit == 300 * 16 and reply_char_limit(10) == 4096
    text = reply() + "<start of answer>" * 1000
    assert parse_reply("caption_qa", text)["answer"] == "A detailed answer."  # trailing junk alone passed
    with pytest.raises(Rejected) as error:
        parse_reply("caption_qa", text, max_chars=limit)
    assert error.value.reason == "too_long" and str(limit) in error.value.detail
