"""A procedurally generated "shapes world": tiny scenes whose every fact is known exactly.

It feeds the offline teacher (which answers from the scene stored in the PNG) and the end-to-end demo, whose tiny
VLM must learn it in minutes at 56 px: one shape kind, one colour, one to three copies, one size, one third of the
canvas. Answers use fixed keywords so an evaluator can check any model answer with `match_keyword`.

    python -m recipes.tiny.shapes_world --output DIR --num N --seed S
"""

from __future__ import annotations

import io
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from PIL import Image, ImageDraw, PngImagePlugin

from dataset_scripts.schema import make_row
from toolkit.cli import Parser


PNG_KEY = "shapes_world"
COLOURS = {
    "red": (215, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 225),
    "yellow": (240, 205, 0),
    "purple": (140, 40, 175),
    "orange": (250, 130, 10),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
POSITIONS = ("left", "centre", "right")
COUNT_WORDS = ("one", "two", "three")
BACKGROUND = (236, 236, 236)
QUESTION_TYPES = ("colour", "shape", "count", "position")
CHOICES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "count": COUNT_WORDS,
    "position": POSITIONS,
    "size": SIZES,
}
QUESTIONS = {
    "colour": "What colour are the shapes?",
    "shape": "What kind of shape is shown?",
    "count": "How many shapes are there?",
    "position": "Where are the shapes?",
}
_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
_WHERE = {"left": "on the left side", "centre": "in the centre", "right": "on the right side"}
_WORDS = ("cat", "house", "river", "planet", "garden", "window", "bottle", "basket", "rocket", "pencil")
ROW_KINDS = ("caption", "instruct", "detailed", "text")
# True of every scene: lengthens answers without changing what they say.
FILLER = (
    "Looking closely, the scene has no other objects.",
    "The background is plain and light grey.",
    "Each shape has a clean outline and a flat colour.",
    "Because the shapes do not overlap, they are easy to count.",
)
# The words the tiny tokenizer learns its merges from (recipes/tiny/models.py): chat markup, the words of this world's
# captions, questions and teacher prompts, everyday English, then the words its text instructions spell.
VOCABULARY = """
[INST] [/INST] the a an of and or to in on at is are was were be it this that these those there here with for from by
image picture photo shows show shown contains describe description detail detailed details question answer explain
what which who where when why how many much colour color shape shapes size position count number left right centre
center middle top bottom side background plain light dark grey gray white black red green blue yellow purple orange
circle circles square squares triangle triangles cross crosses star stars small large big tiny one two three four five
six seven eight nine ten zero plus minus times equals word words letter letters spell backwards reverse sentence
please tell me about you your I we they he she can could would should will do does did not no yes true false
look looking see seen carefully closely reasoning because so therefore first second finally also each every all some
object objects item items thing things scene scenes view area part group groups placed located sits sit appears
write list name give short long simple complex hello thanks thank sure here's answer: question: caption: image:
outline share same solid filled fill every separate total together kind counting gives spelled has word walk through
contents covering fully possible provide account everything comprehensive depicts thorough offer depth visual content
paying attention produce careful notable element elements relate rundown could what's pictured
""".split()
VOCABULARY += _WORDS


@dataclass(frozen=True)
class Scene:
    """One scene; `layout_seed` fixes the small jitter so rendering is a pure function of the scene."""

    colour: str
    shape: str
    count: int
    size: str
    position: str
    layout_seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            (self.colour, tuple(COLOURS)),
            (self.shape, SHAPES),
            (self.count, (1, 2, 3)),
            (self.size, SIZES),
            (self.position, POSITIONS),
        )
        for value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"invalid scene value {value!r}; expected one of {allowed}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(**{key: data[key] for key in ("colour", "shape", "count", "size", "position", "layout_seed")})


def random_scene(rng: random.Random) -> Scene:
    """Draw a scene uniformly over all facts."""
    return Scene(
        colour=rng.choice(tuple(COLOURS)),
        shape=rng.choice(SHAPES),
        count=rng.randint(1, 3),
        size=rng.choice(SIZES),
        position=rng.choice(POSITIONS),
        layout_seed=rng.randrange(2**31),
    )


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, fill: tuple) -> None:
    left, top, right, bottom = cx - radius, cy - radius, cx + radius, cy + radius
    if shape == "circle":
        draw.ellipse((left, top, right, bottom), fill=fill)
    elif shape == "square":
        inset = radius * 0.12  # a square looks larger than a circle of the same width
        draw.rectangle((left + inset, top + inset, right - inset, bottom - inset), fill=fill)
    elif shape == "triangle":
        draw.polygon(((cx, top), (right, bottom), (left, bottom)), fill=fill)
    else:
        arm = radius / 3
        draw.rectangle((cx - arm, top, cx + arm, bottom), fill=fill)
        draw.rectangle((left, cy - arm, right, cy + arm), fill=fill)


def render(scene: Scene, size: int = 112) -> Image.Image:
    """Draw the scene: the shapes stacked in their third of the canvas, non-overlapping (RGB, 2x supersampled)."""
    scale = 2
    canvas = size * scale
    image = Image.new("RGB", (canvas, canvas), BACKGROUND)
    draw = ImageDraw.Draw(image)
    rng = random.Random(scene.layout_seed)
    column = canvas / 3
    cell = canvas / 3  # three vertical slots per column, one shape per slot
    radius = cell * (0.42 if scene.size == "large" else 0.22)
    slack = cell / 2 - radius
    slots = sorted(rng.sample(range(3), scene.count))
    column_index = POSITIONS.index(scene.position)
    for slot in slots:
        cx = column * column_index + column / 2 + rng.uniform(-slack, slack) * 0.6
        cy = cell * slot + cell / 2 + rng.uniform(-slack, slack) * 0.6
        _draw_shape(draw, scene.shape, cx, cy, radius, COLOURS[scene.colour])
    return image.resize((size, size), Image.Resampling.LANCZOS)


def save_png(scene: Scene, path_or_buffer: str | Path | IO[bytes], size: int = 112) -> None:
    """Write the rendered scene as PNG with `json(scene.to_dict())` in a tEXt chunk keyed `shapes_world`."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, json.dumps(scene.to_dict(), sort_keys=True))
    render(scene, size).save(path_or_buffer, format="PNG", pnginfo=info)


def png_bytes(scene: Scene, size: int = 112) -> bytes:
    buffer = io.BytesIO()
    save_png(scene, buffer, size)
    return buffer.getvalue()


PHOTO_GRAIN = 40.0  # the benches' noise sigma: a 500 px image then compresses to ~70 KB of JPEG, as a LAION photo


def with_grain(image: Image.Image, grain: float) -> Image.Image:
    """`image` with a quarter of Gaussian noise of sigma `grain` blended in (none for 0), so that it compresses like
    a photograph; the photo-sized benches' images."""
    if not grain:
        return image
    return Image.blend(image, Image.effect_noise(image.size, grain).convert("RGB"), 0.25)


def save_jpeg(scene: Scene, path: str | Path, size: int, grain: float = 0.0) -> None:
    """The rendered scene as a quality-85 JPEG (photo-sized benches), with `grain` (noise sigma) so it compresses
    like a photograph; JPEG has no tEXt chunk, so the scene goes in its comment segment as `shapes_world:<json>`."""
    image = with_grain(render(scene, size), grain)
    comment = f"{PNG_KEY}:{json.dumps(scene.to_dict(), sort_keys=True)}"
    image.save(path, format="JPEG", quality=85, comment=comment.encode())


def scene_from_image(img_or_bytes: Image.Image | bytes) -> Scene | None:
    """The scene stored in a PNG's metadata (or a `save_jpeg` JPEG's comment), or None for any other image (a copy
    re-encoded without that metadata loses it)."""
    try:
        image = Image.open(io.BytesIO(img_or_bytes)) if isinstance(img_or_bytes, bytes) else img_or_bytes
        text = getattr(image, "text", None) or image.info
        raw = text.get(PNG_KEY)
        comment = image.info.get("comment", b"")
        if raw is None and comment.startswith(f"{PNG_KEY}:".encode()):
            raw = comment[len(PNG_KEY) + 1 :].decode()
        return Scene.from_dict(json.loads(raw)) if raw else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def scene_facts(scene: Scene) -> dict[str, str]:
    """The exact keyword used for each fact (keys: colour, shape, count, position, size)."""
    return {
        "colour": scene.colour,
        "shape": scene.shape,
        "count": COUNT_WORDS[scene.count - 1],
        "position": scene.position,
        "size": scene.size,
    }


def describe(scene: Scene) -> str:
    """Fine-grained caption naming every fact in fixed words."""
    facts = scene_facts(scene)
    noun = scene.shape if scene.count == 1 else _PLURAL[scene.shape]
    return (
        f"The image shows {facts['count']} {scene.size} {scene.colour} {noun} {_WHERE[scene.position]} "
        "of a plain light background."
    )


def ask(scene: Scene, qtype: str) -> tuple[str, str]:
    """(question, answer); the answer is one short sentence containing the fact keyword exactly once."""
    facts = scene_facts(scene)
    one = scene.count == 1
    answers = {
        "colour": f"The shapes are {facts['colour']}.",
        "shape": f"Each shape is a {facts['shape']}.",
        "count": f"There {'is' if one else 'are'} {facts['count']} shape{'' if one else 's'}.",
        "position": f"The shapes are {'in the centre' if scene.position == 'centre' else 'on the ' + scene.position}.",
    }
    if qtype not in answers:
        raise ValueError(f"unknown question type {qtype!r}; expected one of {QUESTION_TYPES}")
    return QUESTIONS[qtype], answers[qtype]


def answer_keyword(scene: Scene, qtype: str) -> str:
    """The keyword a correct answer to `qtype` must contain."""
    return scene_facts(scene)[qtype]


def question_type(question: str) -> str | None:
    """Which QUESTION_TYPES entry a question is (exact wording of `ask`), else None."""
    for qtype, text in QUESTIONS.items():
        if question.strip().lower() == text.lower():
            return qtype
    return None


def match_keyword(text: str, qtype: str) -> str | None:
    """The single CHOICES[qtype] keyword found as a whole word (plurals allowed) in `text`; None if none or several."""
    found = {word for word in CHOICES[qtype] if re.search(rf"\b{re.escape(word)}(s|es)?\b", text, flags=re.IGNORECASE)}
    return found.pop() if len(found) == 1 else None


def text_instruction(rng: random.Random) -> tuple[str, str]:
    """A text-only instruction with a deterministic correct answer (arithmetic and word puzzles)."""
    kind = rng.randrange(4)
    if kind in (0, 1):
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        if kind == 0:
            return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
        return f"What is {a} times {b}?", f"{a} times {b} is {a * b}."
    word = rng.choice(_WORDS)
    if kind == 2:
        return f"Spell the word {word} backwards.", f"The word {word} spelled backwards is {word[::-1]}."
    return f"How many letters are in the word {word}?", f"The word {word} has {len(word)} letters."


def solve_text_instruction(instruction: str) -> str | None:
    """The exact answer to an instruction made by `text_instruction`, or None for anything else."""
    text = instruction.strip()
    if match := re.fullmatch(r"What is (\d+) (plus|times) (\d+)\?", text):
        a, op, b = int(match[1]), match[2], int(match[3])
        return f"{a} {op} {b} is {a + b if op == 'plus' else a * b}."
    if match := re.fullmatch(r"Spell the word (\w+) backwards\.", text):
        return f"The word {match[1]} spelled backwards is {match[1][::-1]}."
    if match := re.fullmatch(r"How many letters are in the word (\w+)\?", text):
        return f"The word {match[1]} has {len(match[1])} letters."
    return None


def write_scenes(folder: str | Path, n: int, seed: int, size: int = 112, grain: float | None = None) -> list[Path]:
    """Write `n` random scenes as `scene-<i>.png` (with `grain`: photo-like `.jpeg`, see save_jpeg); use different
    seeds for train and held-out sets."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for index in range(n):
        path = folder / f"scene-{seed}-{index:06d}.{'png' if grain is None else 'jpeg'}"
        if grain is None:
            save_png(random_scene(rng), path, size)
        else:
            save_jpeg(random_scene(rng), path, size, grain)
        paths.append(path)
    return paths


def dataset_rows(
    kind: str,
    count: int,
    seed: int,
    *,
    image_size: int = 112,
    text_fraction: float = 0.0,
    max_words: int | None = None,
    min_words: int = 10,
    id_prefix: str | None = None,
    **provenance: str | None,
) -> list[dict]:
    """`count` rows in the `dataset_scripts.schema` format straight from the generator (no teacher), for tests and
    benches. `kind`: "caption" (the scene described), "instruct" (one question), "detailed" (the description, then
    the answer) or "text" (a text-only puzzle); `text_fraction` of the rows are text-only whatever the kind. With
    `max_words`, each answer grows by FILLER sentences to a random `min_words` ... `max_words` words. `provenance`:
    `make_row`'s teacher_model, prompt_version, prompt_hash and origin."""
    if kind not in ROW_KINDS:
        raise ValueError(f"unknown row kind {kind!r}; expected one of {ROW_KINDS}")
    rng = random.Random(seed)
    prefix = id_prefix or f"{kind}_shapes_{seed}"
    rows = []
    for index in range(count):
        row_kind = "text" if text_fraction and rng.random() < text_fraction else kind
        image = None
        if row_kind == "text":
            question, answer = text_instruction(rng)
        else:
            scene = random_scene(rng)
            if row_kind == "caption":
                question, answer = "Describe the image in detail.", describe(scene)
            else:
                question, answer = ask(scene, rng.choice(QUESTION_TYPES))
                if row_kind == "detailed":
                    answer = f"{describe(scene)} {answer}"
            image = png_bytes(scene, size=image_size)
        if max_words:
            words = rng.randint(min_words, max_words)
            while len(answer.split()) < words:
                answer += " " + rng.choice(FILLER)
        turns = [{"from": "human", "value": question if image is None else f"<image>\n{question}"}]
        turns.append({"from": "gpt", "value": answer})
        rows.append(make_row(f"{prefix}_{index}", turns, image, source="shapes", **provenance))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        "Write shapes-world scenes as PNG files (scene in PNG metadata).",
        "python -m recipes.tiny.shapes_world --output shapes/train --num 64 --seed 0",
    )
    parser.add_argument("--output", required=True, help="folder to write scene-<seed>-<i>.png into")
    parser.add_argument("--num", type=int, required=True, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (use a different one for held-out data)")
    parser.add_argument("--size", type=int, default=112, help="image side in pixels")
    args = parser.parse_args(argv)
    paths = write_scenes(args.output, args.num, args.seed, args.size)
    print(f"wrote {len(paths)} scenes to {args.output}")


if __name__ == "__main__":
    main()
