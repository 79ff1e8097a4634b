"""Load a saved ALLaVA folder the way a Hub user does (Auto classes + its remote code) and answer a caption request
and two questions about one shapes-world image, printed beside the scene's truth: the demo's last step, run in a
fresh process so nothing of the training process helps.

    python -m recipes.tiny.answer --model outputs/tiny/hub --image outputs/tiny/images/new-scene.png
"""

import sys
from pathlib import Path

from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from recipes.tiny import shapes_world
from recipes.tiny.shapes_eval import CAPTION_REQUEST, generate_answers
from toolkit.cli import InputError, Parser, existing_folder, run


QUESTIONS = (CAPTION_REQUEST, shapes_world.QUESTIONS["colour"], shapes_world.QUESTIONS["shape"])


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        "Answer questions about a shapes-world image with a saved ALLaVA folder (runs the folder's own code).",
        "python -m recipes.tiny.answer --model outputs/tiny/hub --image outputs/tiny/images/new-scene.png",
    )
    parser.add_argument("--model", required=True, help="a saved ALLaVA folder, e.g. the demo's Hub-ready folder")
    parser.add_argument("--image", type=Path, required=True, help="a shapes-world PNG (its scene is the truth)")
    args = parser.parse_args(argv)
    folder = existing_folder(args.model, "--model")
    if not args.image.is_file():
        raise InputError(f"--image: {args.image}: no such file")
    image = Image.open(args.image)
    scene = shapes_world.scene_from_image(image)
    if scene is None:
        raise InputError(f"--image: {args.image}: no shapes-world scene in the PNG metadata")

    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    prompts = [(image.convert("RGB"), question) for question in QUESTIONS]
    for question, answer in zip(QUESTIONS, generate_answers(model, processor, prompts, 1, 40)):
        print(f"  Q: {question}\n  A: {answer}")
    print(f"  (truth: {shapes_world.describe(scene)})")


if __name__ == "__main__":
    sys.exit(run(main))
