"""The README's screenshot: the Space app serving the demo's trained model, driven in headless Chromium.

    python recipes/tiny/demo.py                     # once: the trained model in outputs/tiny/hub
    python -m recipes.tiny.space_screenshot         # -> docs/space-demo.png

Starts `hub/space/app.py --model outputs/tiny/hub` on loopback as its own process (as a user runs it), uploads a
shapes-world image, asks a question the demo's model was trained on, waits until the streamed answer stops growing,
and saves the page at 1100x900. The page may reach loopback only, so the picture never waits on the network. Needs
the system `chromium` (`apt-get install -y chromium`) and the `dev` extra (gradio, playwright).
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from toolkit.cli import InputError, Parser, RunFailed, existing_folder, run


REPO = Path(__file__).resolve().parents[2]
APP = REPO / "hub" / "space" / "app.py"
VIEWPORT = {"width": 1100, "height": 900}
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
# The answer is complete once the page has shown the same non-empty text for this long.
SETTLED_S = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, app: subprocess.Popen, timeout_s: float = 300.0) -> None:
    """Poll the app until it answers; loading the model and importing gradio take a while on a busy CPU."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RunFailed(f"{APP.name} exited with code {app.returncode} before serving (its log is above)")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RunFailed(f"{APP.name} did not answer at {url} within {timeout_s:.0f} s")


def last_answer(page) -> str:
    bots = page.locator("[data-testid=bot]")
    return bots.last.inner_text().strip() if bots.count() else ""


def wait_for_answer(page, timeout_s: float = 300.0) -> str:
    """The last bot message once it is non-empty and has not changed for SETTLED_S seconds."""
    deadline, text, since = time.monotonic() + timeout_s, "", time.monotonic()
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)  # not time.sleep: the loopback route handler runs on this thread
        current = last_answer(page)
        if current != text:
            text, since = current, time.monotonic()
        elif text and time.monotonic() - since >= SETTLED_S:
            return text
    raise RunFailed(f"no complete answer within {timeout_s:.0f} s (last seen: {text!r})")


def screenshot(url: str, image: Path, question: str, output: Path, profile: Path) -> str:
    """Upload `image`, ask `question`, save the page once answered; returns the answer as shown."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RunFailed("no `chromium` on PATH: install the Debian package (apt-get install -y chromium)")

    def loopback_only(route):
        host = route.request.url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        return route.continue_() if host in ("127.0.0.1", "localhost") else route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS, viewport=VIEWPORT
        )
        try:
            browser.route("**/*", loopback_only)
            page = browser.new_page()
            page.goto(url)
            page.locator("input[type=file]").first.set_input_files(str(image))
            page.locator("[data-testid=textbox]").fill(question)
            page.wait_for_function("document.querySelectorAll('.thumbnail-item, .thumbnail-image').length > 0")
            page.locator("[data-testid=textbox]").press("Enter")
            answer = wait_for_answer(page)
            page.evaluate("window.scrollTo(0, 0)")
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output))
        finally:
            browser.close()
    return answer


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        "Screenshot the Space app (hub/space/app.py) answering about a shapes-world image with the demo's model.",
        "python -m recipes.tiny.space_screenshot --model outputs/tiny/hub --output docs/space-demo.png",
    )
    parser.add_argument("--model", default="outputs/tiny/hub", help="a saved ALLaVA folder (the demo's by default)")
    parser.add_argument("--image", type=Path, default=REPO / "hub" / "space" / "examples" / "shapes.png")
    parser.add_argument("--question", default="Describe this image in detail.", help="one the demo's model learned")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "space-demo.png")
    args = parser.parse_args(argv)
    model = existing_folder(args.model, "--model")
    if not (model / "config.json").is_file():
        raise InputError(f"--model: {args.model}: no config.json (run python recipes/tiny/demo.py first)")
    if not args.image.is_file():
        raise InputError(f"--image: {args.image}: no such file")

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, str(APP), "--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    app = subprocess.Popen(command, cwd=REPO)
    try:
        wait_until_serving(url, app)
        with tempfile.TemporaryDirectory(prefix="allava-chromium-") as profile:
            answer = screenshot(url, args.image.resolve(), args.question, args.output, Path(profile))
    finally:
        app.terminate()
        app.wait(timeout=30)
    print(f"Q: {args.question}\nA: {answer}\nsaved {args.output}")


if __name__ == "__main__":
    sys.exit(run(main))
