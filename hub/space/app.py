"""A Gradio chat demo for any ALLaVA model: upload an image, ask about it, get a streamed answer, keep talking.

    python hub/space/app.py --model runs/allava-phi2/finetune         # a local folder
    python hub/space/app.py --model my-org/allava-phi2 --port 7860    # a Hub repo

As a Hugging Face Space (`python hub/push_space.py`) the model is the first entry of `models:` in this folder's
README.md front matter, or the `ALLAVA_MODEL` variable. It reads ALLaVA checkpoints (our `allava` model type) and
native-Llava exports (`hub/export_llava_hf.py`).

Remote code: an ALLaVA checkpoint loads with the installed `modeling_allava` classes when the package is installed
(then nothing from the checkpoint runs). A Space does not have the package, so there an ALLaVA checkpoint loads with
`trust_remote_code=True`: the checkpoint ships its own modeling code, and the Space only ever loads the model named
in its own card. Any other checkpoint runs its own code only with `--trust-remote-code` (or
`ALLAVA_TRUST_REMOTE_CODE=1`).
"""

import argparse
import logging
import os
import threading
from pathlib import Path


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, before gradio is imported

import gradio as gr
import torch
from huggingface_hub import SpaceCard
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, PretrainedConfig, TextIteratorStreamer


HERE = Path(__file__).resolve().parent
MAX_IMAGE_PIXELS = 40_000_000  # refuse larger uploads before decoding them (a 40-megapixel photo is plenty)
EXAMPLES = [
    ("Describe this image in detail.", HERE / "examples" / "shapes.png"),
    ("What colour are the shapes?", HERE / "examples" / "shapes.png"),
]
logger = logging.getLogger("allava.space")


def default_model() -> str | None:
    """`ALLAVA_MODEL`, else the first `models:` entry of the README.md next to this file (a Space's card)."""
    if os.environ.get("ALLAVA_MODEL"):
        return os.environ["ALLAVA_MODEL"]
    readme = HERE / "README.md"
    models = SpaceCard.load(readme).data.models if readme.is_file() else None
    return models[0] if models else None


def needs_remote_code(name_or_path: str, trust_remote_code: bool = False) -> bool:
    """Whether loading `name_or_path` must run code it ships (see the module docstring for the rule)."""
    config, _ = PretrainedConfig.get_config_dict(name_or_path)
    if config.get("model_type") != "allava":
        return trust_remote_code
    try:
        import modeling_allava  # noqa: F401  (registers the ALLaVA classes with the Auto classes)
    except ImportError:
        return True
    return False


def load_model(name_or_path: str, trust_remote_code: bool = False):
    """The model (eval mode, on the GPU when there is one) and its processor, from a Hub repo id or a folder."""
    remote = needs_remote_code(name_or_path, trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(name_or_path, trust_remote_code=remote, dtype="auto")
    processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=remote)
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval(), processor


def open_image(path: str) -> Image.Image:
    """An uploaded file as RGB, refused (one line in the chat) if it is not an image or too large to decode safely."""
    try:
        image = Image.open(path)
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise gr.Error(f"{Path(path).name}: {image.width}x{image.height} pixels is too large for this demo.")
        return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:
        raise gr.Error(f"{Path(path).name} is not a readable image ({error}).") from None


def _parts(content) -> tuple[list[str], list[str]]:
    """The texts and file paths of one Gradio chat message (a string, a file, or a list of typed parts)."""
    texts, files = [], []
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, str):
            texts.append(part)
        elif part.get("type") == "text":
            texts.append(part["text"])
        elif part.get("type") == "file" or "path" in part:
            files.append(part["file"]["path"] if "file" in part else part["path"])
    return texts, files


def to_messages(message: dict, history: list[dict]) -> tuple[list[dict], Image.Image | None]:
    """Chat-template messages for the whole conversation, the image in its first user turn.

    ALLaVA answers about one image per conversation: uploading another image starts a new conversation about
    it, so earlier turns (about the old image) are left out of the prompt."""
    files = [{"path": file if isinstance(file, str) else file["path"]} for file in message.get("files", [])]
    current = {"role": "user", "content": [*files, message.get("text", "")]}
    messages, image = [], None
    for turn in [*history, current]:
        texts, files = _parts(turn["content"])
        if turn["role"] == "user" and files:
            messages, image = [], open_image(files[-1])
        parts = [{"type": "text", "text": text} for text in texts if text]
        if messages and messages[-1]["role"] == turn["role"]:  # Gradio may split one turn into several messages
            messages[-1]["content"] += parts
        else:
            messages.append({"role": turn["role"], "content": parts})
    if image is not None:
        messages[0]["content"].insert(0, {"type": "image", "image": image})
    return messages, image


def build_demo(model, processor, title: str = "ALLaVA") -> gr.ChatInterface:
    """The chat UI around `model`: streamed answers, multi-turn history, examples and generation settings."""

    def respond(message: dict, history: list[dict], max_new_tokens: int, temperature: float, top_p: float):
        messages, image = to_messages(message, history)
        inputs = processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        ).to(model.device, dtype=model.dtype)
        logger.info("answering: %d prompt tokens, %d image(s)", inputs["input_ids"].shape[1], image is not None)
        greedy = {"do_sample": False}
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else greedy
        streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failures = []

        def generate() -> None:
            try:
                model.generate(**inputs, streamer=streamer, max_new_tokens=int(max_new_tokens), **sampling)
            except Exception as error:  # noqa: BLE001 (reported in the chat; the streamer must end either way)
                failures.append(error)
                streamer.end()

        thread = threading.Thread(target=generate, daemon=True)
        thread.start()
        answer = ""
        for piece in streamer:
            answer += piece
            yield answer
        thread.join()
        if failures:
            logger.error("generation failed: %r", failures[0])
            raise gr.Error(f"Generation failed: {failures[0]}")

    settings = [
        gr.Slider(1, 1024, value=256, step=1, label="Max new tokens"),
        gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)"),
        gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p (when sampling)"),
    ]
    examples = [[{"text": text, "files": [str(path)]}, 256, 0.0, 0.9] for text, path in EXAMPLES if path.is_file()]
    return gr.ChatInterface(
        respond,
        multimodal=True,
        textbox=gr.MultimodalTextbox(file_types=["image"], placeholder="Upload an image and ask about it"),
        chatbot=gr.Chatbot(label=title, height=520),
        additional_inputs=settings,
        additional_inputs_accordion=gr.Accordion("Generation settings", open=False),
        examples=examples or None,
        cache_examples=False,
        title=title,
        description="Upload an image, ask a question, keep the conversation going. Answers stream as generated.",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=default_model(), help="Hub repo id or local folder (default: the card's)")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=os.environ.get("ALLAVA_TRUST_REMOTE_CODE") == "1",
        help="run the code a non-ALLaVA checkpoint ships (ALLaVA checkpoints never need it)",
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("no model: pass --model <repo id or folder> or set ALLAVA_MODEL")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        model, processor = load_model(args.model, args.trust_remote_code)
    except (OSError, ValueError) as error:  # a missing repo or folder, a config without model_type, refused code
        parser.exit(2, f"error: cannot load {args.model}: {str(error).splitlines()[0]}\n")
    demo = build_demo(model, processor, title=f"ALLaVA: {args.model}")
    demo.queue().launch(server_name=args.host, server_port=args.port, share=False)


if __name__ == "__main__":
    main()
