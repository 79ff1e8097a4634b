"""What the offline teacher reads from a request and answers: the correct tagged reply to each allava template.

The replies are built from the shapes-world scene, so captions and answers are correct by construction; the content
faults (malformed sections, refusals, prompt leakage) are what a real teacher sometimes sends instead.
"""

from __future__ import annotations

import base64
import binascii

from recipes.tiny import shapes_world as world


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


def apply_content_fault(fault: str, reply: str, template: str, sequence: int) -> str:
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


def content_texts(messages: list) -> tuple[list[str], list[str]]:
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


def leading_texts(messages: list) -> list[str]:
    """The text parts a request starts with, up to its first image: what a provider's prefix cache can match."""
    texts = []
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or []:
            if not isinstance(part, dict) or part.get("type") != "text":
                return texts
            texts.append(str(part.get("text", "")))
    return texts


def scene_of(url: str) -> world.Scene | None:
    if not url.startswith("data:") or ";base64," not in url:
        return None
    try:
        return world.scene_from_image(base64.b64decode(url.split(";base64,", 1)[1], validate=True))
    except (binascii.Error, ValueError):
        return None


def between(text: str, name: str) -> str | None:
    start, end = f"<start of {name}>", f"<end of {name}>"
    if start in text and end in text:
        return text.split(start, 1)[1].split(end, 1)[0].strip()
    return None
