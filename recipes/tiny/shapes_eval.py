"""Held-out evaluation on the shapes world: did the model learn what the teacher taught?

    python recipes/tiny/shapes_eval.py --model outputs/tiny/finetune --images outputs/tiny/images/heldout \
        --output outputs/tiny/finetune/results.json

Per question type (colour, shape, count, position) the model's answer counts as correct when it names exactly one
choice of that type and it is the true one; chance is 1 / number of choices. Captions are scored by the fraction
of true scene facts they name and the fraction of facts they get wrong (invented). Text-only instructions check
that language use survived image training (the forgetting check). Results use the `results.json` shape that the
model card reads.
"""

import json
import random
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from modeling_allava.processing_allava import open_image
from recipes.benchmarks.common import Sample
from recipes.benchmarks.generation import fixed_batches, generate
from recipes.remote_code import RemoteCodeRefusedError, add_trust_remote_code_argument, load_pretrained
from recipes.tiny import shapes_world
from toolkit.cli import Parser, run


CAPTION_REQUEST = "Describe this image in detail."
CAPTION_FACTS = ("colour", "shape", "count", "position", "size")


def generate_answers(
    model, processor, prompts: list[tuple[Image.Image | None, str]], batch_size: int, max_new_tokens: int
) -> list[str]:
    """Greedy answers for (image or None, question) pairs: eval_benchmarks.py's batched generator, left-padded."""
    processor.tokenizer.padding_side = "left"
    samples = [
        Sample(id=str(index), prompt=question, images=[image] if image is not None else [])
        for index, (image, question) in enumerate(prompts)
    ]
    batches = fixed_batches(samples, batch_size)
    return [answer for batch in batches for answer in generate(model, processor, batch, max_new_tokens)]


def _scenes(images_dir: Path, limit: int | None) -> list[tuple[Image.Image, shapes_world.Scene]]:
    paths = sorted(images_dir.glob("*.png"))[:limit]
    if not paths:
        raise FileNotFoundError(f"--images {images_dir}: no .png scenes found")
    scenes = []
    for path in paths:
        image = open_image(path, str(path))  # the pixel budget every image reader shares
        scene = shapes_world.scene_from_image(image)
        if scene is None:
            raise ValueError(f"{path}: no shapes-world scene in the PNG metadata")
        scenes.append((image.convert("RGB"), scene))
    return scenes


def score_questions(answers: list[str], truths: list[str], qtype: str) -> float:
    hits = sum(shapes_world.match_keyword(answer, qtype) == truth for answer, truth in zip(answers, truths))
    return hits / len(truths)


def score_caption(caption: str, scene: shapes_world.Scene) -> tuple[int, int]:
    """(true facts named, facts named wrongly) for one caption."""
    facts = shapes_world.scene_facts(scene)
    named = {fact: shapes_world.match_keyword(caption, fact) for fact in CAPTION_FACTS}
    correct = sum(named[fact] == facts[fact] for fact in CAPTION_FACTS)
    invented = sum(named[fact] is not None and named[fact] != facts[fact] for fact in CAPTION_FACTS)
    return correct, invented


def evaluate(model, processor, images_dir: Path, num_text: int, batch_size: int, limit: int | None) -> dict:
    scenes = _scenes(images_dir, limit)
    benchmarks, examples = {}, {}
    for qtype in shapes_world.QUESTION_TYPES:
        question = shapes_world.QUESTIONS[qtype]
        answers = generate_answers(model, processor, [(image, question) for image, _ in scenes], batch_size, 48)
        truths = [shapes_world.answer_keyword(scene, qtype) for _, scene in scenes]
        benchmarks[f"shapes-{qtype}"] = {
            "metric": "accuracy",
            "value": score_questions(answers, truths, qtype),
            "chance": 1 / len(shapes_world.CHOICES[qtype]),
            "num_samples": len(scenes),
        }
        examples[qtype] = {"question": question, "answer": answers[0], "truth": truths[0]}

    captions = generate_answers(model, processor, [(image, CAPTION_REQUEST) for image, _ in scenes], batch_size, 64)
    scores = [score_caption(caption, scene) for caption, (_, scene) in zip(captions, scenes)]
    total = len(scenes) * len(CAPTION_FACTS)
    benchmarks["shapes-caption-facts"] = {
        "metric": "fraction of true facts named",
        "value": sum(correct for correct, _ in scores) / total,
        "num_samples": len(scenes),
    }
    benchmarks["shapes-caption-invented"] = {
        "metric": "fraction of facts named wrongly (lower is better)",
        "value": sum(invented for _, invented in scores) / total,
        "num_samples": len(scenes),
    }
    examples["caption"] = {
        "question": CAPTION_REQUEST,
        "answer": captions[0],
        "truth": shapes_world.describe(scenes[0][1]),
    }

    rng = random.Random(12345)  # instructions the training set (other seeds) mostly did not contain
    instructions = [shapes_world.text_instruction(rng) for _ in range(num_text)]
    replies = generate_answers(model, processor, [(None, question) for question, _ in instructions], batch_size, 48)
    benchmarks["text-exact"] = {
        "metric": "exact match",
        "value": sum(reply == answer for reply, (_, answer) in zip(replies, instructions)) / num_text,
        "num_samples": num_text,
    }
    well_formed = [reply.endswith(".") and len(reply.split()) >= 3 and "<image>" not in reply for reply in replies]
    benchmarks["text-well-formed"] = {
        "metric": "fraction of well-formed sentences",
        "value": sum(well_formed) / num_text,
        "num_samples": num_text,
    }
    examples["text"] = {"question": instructions[0][0], "answer": replies[0], "truth": instructions[0][1]}
    for name, entry in benchmarks.items():  # procedurally generated held-out data, not a Hub dataset
        entry.update(dataset_id=f"shapes-world/{name}", split="heldout", limit=limit)
    return {"benchmarks": benchmarks, "examples": examples}


def main(argv: list[str] | None = None) -> dict:
    """The command line (module docstring): the results; a refused checkpoint ends in one line and SystemExit(2)."""
    return run(_main, argv, expected=(RemoteCodeRefusedError,), exit_now=True)


def _main(argv: list[str] | None) -> dict:
    parser = Parser(
        __doc__.split("\n\n")[0],
        "python recipes/tiny/shapes_eval.py --model outputs/tiny/finetune --images outputs/tiny/images/heldout",
    )
    parser.add_argument("--model", required=True, help="checkpoint folder or hub id")
    parser.add_argument("--images", required=True, type=Path, help="folder of held-out shapes-world PNG scenes")
    parser.add_argument("--output", type=Path, help="results.json to write (default: <model>/results.json)")
    parser.add_argument("--num-text", type=int, default=32, help="text-only instructions for the forgetting check")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, help="evaluate only the first N scenes")
    add_trust_remote_code_argument(parser)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = load_pretrained(AutoModelForImageTextToText, args.model, args.trust_remote_code).eval()
    processor = load_pretrained(AutoProcessor, args.model, args.trust_remote_code)
    results = {
        "model": args.model,
        **evaluate(model, processor, args.images, args.num_text, args.batch_size, args.limit),
    }
    output = args.output or Path(args.model) / "results.json"
    output.write_text(json.dumps(results, indent=2))
    for name, entry in results["benchmarks"].items():
        chance = f" (chance {entry['chance']:.2f})" if "chance" in entry else ""
        print(f"{name:26s} {entry['value']:.3f}{chance}")
    return results


if __name__ == "__main__":
    main()
