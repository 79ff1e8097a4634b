"""Create (or update) a Hugging Face Space that chats with an ALLaVA model on the Hub: the Gradio app in hub/space/.

    python hub/push_space.py --model my-org/allava-phi2 --space my-org/allava-phi2-demo [--private]
    python hub/push_space.py --model my-org/allava-phi2 --space my-org/allava-phi2-demo --dry-run --space-dir demo/

The Space holds `app.py`, `requirements.txt`, an example image and a README whose front matter names the model
(`models: [my-org/allava-phi2]`): the app loads that model, and the Hub links the Space from the model's page.
`--dry-run` writes exactly that folder and sends nothing; `python <folder>/app.py` runs it locally. The token comes
from `HF_TOKEN` or `hf auth login`, as for hub/push_model.py.
"""

import shutil
import tempfile
from pathlib import Path

from huggingface_hub import SpaceCard

from hub.upload import upload_folder
from toolkit.cli import InputError, Parser, check_repo_id, run


APP_DIR = Path(__file__).resolve().parent / "space"
SPACE_FILES = ("app.py", "requirements.txt", "examples/shapes.png")


def check_hub_id(value: str, flag: str) -> str:
    """A repo id the Hub accepts; a local folder is refused, since a Space downloads its model."""
    if Path(value).exists():
        raise InputError(f"{flag} {value}: a Space loads its model from the Hub; push the folder first "
                         "(python hub/push_model.py <folder> --repo-id org/name) and pass that repo id.")  # fmt: skip
    return check_repo_id(value, flag)


def build_space_folder(model_id: str, space_dir: Path, title: str | None = None) -> Path:
    """Write the Space (app, requirements, example, card naming `model_id`) into `space_dir`, empty or absent."""
    if space_dir.exists() and any(space_dir.iterdir()):
        raise FileExistsError(f"{space_dir} is not empty; pick an empty --space-dir so nothing stale is uploaded.")
    for name in SPACE_FILES:
        (space_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(APP_DIR / name, space_dir / name)
    card = SpaceCard.load(APP_DIR / "README.md")
    card.data.models = [model_id]
    if title:
        card.data.title = title
    card.text = card.text.rstrip() + f"\n\nModel: [{model_id}](https://huggingface.co/{model_id})\n"
    card.save(space_dir / "README.md")
    return space_dir


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv, expected=(FileExistsError,))


def _main(argv: list[str] | None) -> None:
    parser = Parser(
        "Create (or update) a Hugging Face Space that chats with an ALLaVA model on the Hub.",
        "python hub/push_space.py --model my-org/allava-phi2 --space my-org/allava-phi2-demo --dry-run",
    )
    parser.add_argument("--model", required=True, help="the model's Hub repo id (org/name)")
    parser.add_argument("--space", required=True, help="the Space's repo id (org/name)")
    parser.add_argument("--title", help="Space title (default: the template's)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--dry-run", action="store_true", help="write the Space folder only; send nothing")
    parser.add_argument("--space-dir", type=Path, help="where to build the Space (default: ./<name> on --dry-run)")
    parser.add_argument("--commit-message", default="Upload ALLaVA chat Space")
    args = parser.parse_args(argv)
    model_id, space_id = check_hub_id(args.model, "--model"), check_hub_id(args.space, "--space")
    if args.dry_run:
        folder = build_space_folder(model_id, args.space_dir or Path(space_id.split("/")[-1]), args.title)
        print(f"Dry run: the Space {space_id} for {model_id} is in {folder}; run it with python {folder}/app.py")
        return
    with tempfile.TemporaryDirectory(prefix="allava-space-") as scratch:
        folder = build_space_folder(model_id, args.space_dir or Path(scratch), args.title)
        print(upload_folder(folder, space_id, repo_type="space", space_sdk="gradio", private=args.private,
                            commit_message=args.commit_message))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
