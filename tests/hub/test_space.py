"""hub/space/app.py (the Gradio chat demo) and hub/push_space.py: messages, remote-code rule, the Space folder, a push
to the fake Hub, the CLI, and a real headless Chromium uploading an image and watching the answer stream in."""

import functools
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from hub.export_llava_hf import export
from hub.push_space import build_space_folder
from hub.push_space import main as push_space_main
from recipes.tiny.models import build_tiny_model_and_processor
from tests.hub.fake_hub import FakeHub
from tests.hub.processes import REPO_ROOT, run_python


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no `chromium` on PATH: install the Debian package (apt-get install -y chromium)"
)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
EXAMPLE_IMAGE = REPO_ROOT / "hub" / "space" / "examples" / "shapes.png"
TOKEN = "hf_FakeTokenForTests0123456789abcdef"


# A fresh process where `modeling_allava` cannot be imported, as in a Space: app.py must fall back to remote code.
SPACE_WITHOUT_PACKAGE = """
import importlib.util, sys
sys.modules["modeling_allava"] = None
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
model, processor = app.load_model(sys.argv[2])
print(app.needs_remote_code(sys.argv[2]), *(type(made).__module__.split(".")[0] for made in (model, processor)))
"""


def load_app(path: Path = REPO_ROOT / "hub" / "space" / "app.py"):
    """app.py is a Space's entry script, not a package module: import it from its file, as the Space runs it."""
    spec = importlib.util.spec_from_file_location(f"space_app_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app():
    return load_app()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("space") / "tiny"
    model, processor = build_tiny_model_and_processor("phi", seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def picture(tmp_path) -> Path:
    path = tmp_path / "picture.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_history_becomes_messages_with_the_image_in_the_first_user_turn(app, checkpoint, picture):
    history = [  # what Gradio 6 hands the chat function: normalized messages, a file part for the upload
        {"role": "user", "content": [{"type": "file", "file": {"path": str(picture)}}]},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Noise."}]},
    ]
    messages, image = app.to_messages({"text": "Which colours?", "files": []}, history)
    assert image.size == (80, 60) and image.mode == "RGB"
    assert [turn["role"] for turn in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == [{"type": "image", "image": image}, {"type": "text", "text": "What is this?"}]
    assert messages[2]["content"] == [{"type": "text", "text": "Which colours?"}]

    model, processor = app.load_model(str(checkpoint))
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert inputs["pixel_values"].shape[0] == 1
    assert (inputs["input_ids"] == model.config.image_token_index).sum() == model.config.image_seq_length

    # A new upload starts a new conversation about that image; the earlier turns are about another one.
    messages, image = app.to_messages({"text": "And now?", "files": [str(picture)]}, history)
    assert [turn["role"] for turn in messages] == ["user"]
    assert messages[0]["content"] == [{"type": "image", "image": image}, {"type": "text", "text": "And now?"}]


def test_bad_uploads_are_one_line_errors(app, tmp_path, monkeypatch):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(gr.Error, match="notes.png is not a readable image"):
        app.open_image(str(tmp_path / "notes.png"))
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(app, "MAX_IMAGE_PIXELS", 300 * 200 - 1)
    with pytest.raises(gr.Error, match="big.png: 300x200 pixels is too large"):
        app.open_image(str(tmp_path / "big.png"))


def test_remote_code_only_where_the_rule_allows(app, checkpoint, tmp_path):
    assert app.needs_remote_code(str(checkpoint)) is False  # installed classes, whatever the flag says
    assert app.needs_remote_code(str(checkpoint), trust_remote_code=True) is False
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "acme", "auto_map": {"AutoModel": "m.M"}}')
    assert app.needs_remote_code(str(tmp_path / "other")) is False
    assert app.needs_remote_code(str(tmp_path / "other"), trust_remote_code=True) is True

    # In a Space the package is not installed: the ALLaVA checkpoint's own code is what loads it.
    loaded = run_python(["-c", SPACE_WITHOUT_PACKAGE, str(REPO_ROOT / "hub" / "space" / "app.py"), str(checkpoint)])
    assert loaded.stdout.split() == ["True", "transformers_modules", "transformers_modules"]


def test_native_llava_export_chats_without_remote_code(app, checkpoint, tmp_path, picture):
    export(checkpoint, tmp_path / "llava")
    assert app.needs_remote_code(str(tmp_path / "llava")) is False
    model, processor = app.load_model(str(tmp_path / "llava"))
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    demo = app.build_demo(model, processor)
    answers = list(demo.fn({"text": "What is this?", "files": [str(picture)]}, [], 6, 0.0, 0.9))
    assert answers and all(later.startswith(earlier) for earlier, later in zip(answers, answers[1:]))


def test_a_failed_generation_is_an_error_in_the_chat_not_a_hang(app, checkpoint, picture, monkeypatch):
    model, processor = app.load_model(str(checkpoint))

    def broken(**kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(model, "generate", broken)
    demo = app.build_demo(model, processor)
    outcome = []

    def chat() -> None:
        try:
            list(demo.fn({"text": "What is this?", "files": [str(picture)]}, [], 6, 0.0, 0.9))
        except gr.Error as error:
            outcome.append(error.message)

    worker = threading.Thread(target=chat, daemon=True)
    worker.start()
    worker.join(timeout=120)  # a streamer nobody ends would wait forever
    assert not worker.is_alive() and outcome == ["Generation failed: CUDA out of memory"]


def test_space_folder_names_the_model_and_runs_from_its_card(tmp_path, monkeypatch):
    folder = build_space_folder("tester/allava-tiny", tmp_path / "space", title="Tiny chat")
    assert sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()) == [
        "README.md", "app.py", "examples/shapes.png", "requirements.txt"]  # fmt: skip
    space_app = load_app(folder / "app.py")
    monkeypatch.delenv("ALLAVA_MODEL", raising=False)
    assert space_app.default_model() == "tester/allava-tiny"
    monkeypatch.setenv("ALLAVA_MODEL", "tester/other")
    assert space_app.default_model() == "tester/other"
    requirements = (folder / "requirements.txt").read_text()
    assert all(name in requirements for name in ("torch", "transformers", "pillow", "gradio"))
    with pytest.raises(FileExistsError, match="not empty"):
        build_space_folder("tester/allava-tiny", folder)


def test_push_space_to_the_hub_then_again_changes_nothing(tmp_path):
    with FakeHub(TOKEN) as hub:
        env = hub.client_env(tmp_path / "hf_home")
        push = ["hub/push_space.py", "--model", "tester/allava-tiny", "--space", "tester/allava-tiny-demo"]
        first = run_python(push, env=env)
        second = run_python(push, env=env)
        files = hub.commits("tester/allava-tiny-demo", repo_type="space")[-1].files
    assert "Pushed space tester/allava-tiny-demo@main" in first.stdout
    assert "No changes" in second.stdout
    assert {"app.py", "requirements.txt", "examples/shapes.png", "README.md"} <= set(files)
    card = files["README.md"].decode()
    assert "sdk: gradio" in card and "models:\n- tester/allava-tiny" in card
    assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--space", "not a repo", "error: --space: 'not a repo' is not a Hub repo id"),
     ("--model", "a/b/c", "error: --model: 'a/b/c' is not a Hub repo id"),
     ("--model", "hub", "error: --model hub: a Space loads its model from the Hub")],
)  # fmt: skip
def test_push_space_refuses_bad_ids_in_one_line(flag, value, message, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    args = {"--model": "tester/allava-tiny", "--space": "tester/demo", flag: value}
    assert push_space_main([item for pair in args.items() for item in pair] + ["--dry-run"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(message) and len(error.strip().splitlines()) == 1


def test_cli_serves_the_app_and_refuses_a_missing_model(app, checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--model", str(tmp_path / "nope")])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith(f"error: cannot load {tmp_path / 'nope'}")
    assert len(error.strip().splitlines()) == 1

    port = free_port()
    server = subprocess.Popen([sys.executable, "hub/space/app.py", "--model", str(checkpoint), "--port", str(port)],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        else:
            pytest.fail("the app did not start serving")
        assert "gradio" in page.lower()
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.fixture
def served(app, checkpoint):
    """The app on loopback in this process, its model slowed down and made to space its words so the answer
    visibly streams word by word; every generate() call is recorded."""
    model, processor = app.load_model(str(checkpoint))
    space = processor.tokenizer.convert_tokens_to_ids(processor.tokenizer.tokenize(" ")[0])
    words = torch.full((model.config.text_config.vocab_size,), float("-inf"))
    words[[i for i in range(len(processor.tokenizer)) if processor.tokenizer.decode([i]).strip().isalnum()]] = 0
    forward, generate, calls, steps = model.forward, model.generate, [], []

    @functools.wraps(forward)
    def slow_forward(*args, **kwargs):
        time.sleep(0.1)
        output = forward(*args, **kwargs)
        steps.append(len(steps))
        if len(steps) % 2:  # a word (any alphanumeric token the random model likes best) ...
            output.logits[:, -1] += words
        else:  # ... then a space
            output.logits[:, -1, space] = output.logits[:, -1].max() + 1
        return output

    @functools.wraps(generate)
    def recorded_generate(*args, **kwargs):
        steps.clear()
        output = generate(*args, **kwargs)
        calls.append({"kwargs": kwargs, "answer": processor.decode(output[0, kwargs["input_ids"].shape[1]:],
                                                                   skip_special_tokens=True)})  # fmt: skip
        return output

    model.forward, model.generate = slow_forward, recorded_generate
    demo = app.build_demo(model, processor, title="ALLaVA: tiny random model")
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/", calls
    demo.close()


def alnum(text: str) -> str:
    return re.sub(r"\W", "", text)


@needs_chromium
def test_chat_in_headless_chromium_streams_an_answer_about_the_upload(served, tmp_path):
    from playwright.sync_api import sync_playwright

    url, calls = served
    outside = []

    def local_only(route):
        host = re.match(r"\w+://([^/:]+)", route.request.url)
        if host and host.group(1) not in ("127.0.0.1", "localhost"):
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 900},
        )  # fmt: skip
        browser.route("**/*", local_only)
        page = browser.new_page()
        page.goto(url)
        page.get_by_text("Generation settings").click()
        page.get_by_label("number input for Max new tokens").fill("16")
        page.get_by_label("number input for Max new tokens").blur()  # the slider takes the value on change
        page.wait_for_function("() => [...document.querySelectorAll('input[type=range]')].some(e => e.value === '16')")
        page.locator("input[type=file]").first.set_input_files(str(EXAMPLE_IMAGE))
        page.locator("[data-testid=textbox]").fill("What colour are the shapes?")
        page.wait_for_function("document.querySelectorAll('.thumbnail-item, .thumbnail-image').length > 0")
        page.evaluate("""() => {
            window.seen = [];
            new MutationObserver(() => {
                const bots = document.querySelectorAll('[data-testid="bot"]');
                if (bots.length) window.seen.push(bots[bots.length - 1].innerText);
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }""")
        page.locator("[data-testid=textbox]").press("Enter")
        for _ in range(600):  # page.wait_for_timeout, not time.sleep: the route handler runs on this thread
            if calls:
                break
            page.wait_for_timeout(100)
        final = alnum(calls[0]["answer"])
        page.wait_for_function("want => { const b = document.querySelectorAll('[data-testid=\"bot\"]');"
                               " return b.length && b[b.length - 1].innerText.replace(/[\\W_]/g, '') === want; }",
                               arg=final.replace("_", ""))  # fmt: skip
        seen = [alnum(text) for text in page.evaluate("window.seen")]
        page.get_by_text("Generation settings").click()  # folded again, and back to the top
        page.evaluate("window.scrollTo(0, 0)")
        shot = tmp_path / "space-demo.png"
        page.screenshot(path=str(shot))
        browser.close()

    assert Image.open(shot).size == (1100, 900) and Image.open(shot).convert("L").getextrema()[0] < 100  # text drawn
    assert outside == []  # every asset came from the app itself: nothing waits on a CDN
    kwargs = calls[0]["kwargs"]
    assert kwargs["max_new_tokens"] == 16 and kwargs["pixel_values"].shape[0] == 1  # the settings and the upload
    states = list(dict.fromkeys(text for text in seen if text))
    assert len(states) >= 3, states  # the answer grew in the page several times before it was complete
    assert all(final.replace("_", "").startswith(state.replace("_", "")) for state in states)
