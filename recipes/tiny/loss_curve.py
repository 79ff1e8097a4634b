"""Training-loss curves from Trainer logs, drawn with Pillow (no plotting dependency).

python recipes/tiny/loss_curve.py outputs/tiny/stage1 outputs/tiny/stage2 --output loss_curve.png
"""

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from toolkit.cli import Parser, existing_folder, run


COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def read_losses(run_dir: str | Path) -> list[tuple[int, float]]:
    """(step, loss) pairs from `trainer_state.json` in the run folder or, failing that, its latest checkpoint."""
    run_dir = Path(run_dir)
    candidates = [run_dir / "trainer_state.json"] + sorted(
        run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1]), reverse=True
    )
    for path in candidates:
        if path.exists():
            history = json.loads(path.read_text())["log_history"]
            return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]
    raise FileNotFoundError(f"{run_dir}: no trainer_state.json (was the run saved?)")


def plot_loss_curves(runs: dict[str, str | Path], output: str | Path, size: tuple[int, int] = (720, 420)) -> Path:
    """One line per run, placed one after another on a shared step axis (stage 2 continues stage 1)."""
    series, offset = {}, 0
    for label, run_dir in runs.items():
        points = read_losses(run_dir)
        if not points:
            raise ValueError(f"{run_dir}: the log has no training loss entries")
        series[label] = [(offset + step, loss) for step, loss in points]
        offset = series[label][-1][0]
    width, height = size
    left, right, top, bottom = 70, 20, 30, 50
    steps = [step for points in series.values() for step, _ in points]
    losses = [loss for points in series.values() for _, loss in points]
    max_step, max_loss = max(max(steps), 1), max(losses) * 1.05
    min_loss = min(0.0, min(losses))

    def xy(step: float, loss: float) -> tuple[float, float]:
        x = left + (width - left - right) * step / max_step
        y = top + (height - top - bottom) * (1 - (loss - min_loss) / (max_loss - min_loss))
        return x, y

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.line([(left, top), (left, height - bottom), (width - right, height - bottom)], fill="black")
    for tick in range(5):
        loss = min_loss + (max_loss - min_loss) * tick / 4
        x, y = xy(0, loss)
        draw.line([(x - 4, y), (x, y)], fill="black")
        draw.text((8, y - 6), f"{loss:.2f}", fill="black")
        step = max_step * tick / 4
        x, y = xy(step, min_loss)
        draw.line([(x, y), (x, y + 4)], fill="black")
        draw.text((x - 12, y + 8), f"{step:.0f}", fill="black")
    draw.text((width // 2 - 20, height - 20), "step", fill="black")
    draw.text((8, 8), "training loss", fill="black")
    for index, (label, points) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        draw.line([xy(step, loss) for step, loss in points], fill=colour, width=2)
        # The swatch is drawn, not typed: Pillow's default font has no dash glyphs beyond ASCII '-'.
        x, y = width - right - 110, top + 16 * index
        draw.line([(x, y + 6), (x + 14, y + 6)], fill=colour, width=2)
        draw.text((x + 18, y), label, fill=colour)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    image.save(output)
    return output


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv, expected=(ValueError, OSError))


def _main(argv: list[str] | None) -> None:
    parser = Parser(
        "Plot the training-loss curves of one or more Trainer output folders into a PNG.",
        "python recipes/tiny/loss_curve.py outputs/tiny/stage1 outputs/tiny/stage2 --output loss_curve.png",
    )
    parser.add_argument("runs", nargs="+", help="Trainer output folders, in training order")
    parser.add_argument("--output", required=True, help="PNG file to write")
    args = parser.parse_args(argv)
    for folder in args.runs:
        existing_folder(folder, "runs")
    print(plot_loss_curves({Path(folder).name: folder for folder in args.runs}, args.output))


if __name__ == "__main__":
    sys.exit(main())
