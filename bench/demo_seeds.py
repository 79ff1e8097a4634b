"""Does the tiny demo recipe learn every question type whatever the seed and thread count? Train it again and see.

    python recipes/tiny/demo.py --output outputs/tiny                  # once: images, dataset, backbones
    python bench/demo_seeds.py --demo outputs/tiny --seeds 0 1 2 3 4 --threads 1 2 [--quick]

Each run trains stage 1 and stage 2 from the demo's backbones and dataset with `recipes/sft.py --seed S` on T torch
threads (OMP_NUM_THREADS), then scores the held-out scenes with the demo's evaluator; its folder keeps the results,
so a rerun skips finished runs. One-thread runs go two at a time (one per core); others run alone. Training is
deterministic for a fixed seed, data and thread count, so sharing the machine changes the wall time, not the scores.
Prints one row per run and the worst score per question type.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from recipes.tiny.demo import SIZES, evaluation_command, training_commands
from toolkit.cli import Parser, run


REPO = Path(__file__).resolve().parents[1]
QUESTION_TYPES = ("colour", "shape", "count", "position")
# stage-1 and stage-2 steps of the demo's full and --quick modes
STEPS = {mode: sizes[3:] for mode, sizes in SIZES.items()}


def stage_commands(demo: Path, out: Path, seed: int, steps: tuple[int, int]) -> list[list[str]]:
    """The demo's stage-1, stage-2 and evaluation commands for one seed, writing under `out`."""
    stage1, stage2 = training_commands(demo, out, steps, seed)
    return [[*stage1, "--report_to", "none"], [*stage2, "--report_to", "none"], evaluation_command(demo, out)]


def train_and_score(demo: Path, out: Path, seed: int, threads: int, steps: tuple[int, int]) -> dict:
    """One run; a finished one is read back, an unfinished one starts again from an empty folder."""
    results_path = out / "stage2" / "results.json"
    if not results_path.is_file():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        for command in stage_commands(demo, out, seed, steps):
            with open(out / "log.txt", "a") as log:
                if subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode:
                    raise RuntimeError(f"{out}: `{' '.join(command[1:3])}` failed; see {out / 'log.txt'}")
    benchmarks = json.loads(results_path.read_text())["benchmarks"]
    return {
        "seed": seed,
        "threads": threads,
        **{qtype: benchmarks[f"shapes-{qtype}"]["value"] for qtype in QUESTION_TYPES},
        "chance": {qtype: benchmarks[f"shapes-{qtype}"]["chance"] for qtype in QUESTION_TYPES},
        "captions right": benchmarks["shapes-caption-facts"]["value"],
        "captions invented": benchmarks["shapes-caption-invented"]["value"],
    }


def print_table(rows: list[dict]) -> None:
    columns = ("seed", "threads", *QUESTION_TYPES, "captions right", "captions invented")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in sorted(rows, key=lambda row: (row["threads"], row["seed"])):
        print("| " + " | ".join(f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")
    chance = rows[0]["chance"]
    worst = ", ".join(f"{q} {min(row[q] for row in rows):.2f} (chance {chance[q]:.2f})" for q in QUESTION_TYPES)
    print(f"\nworst over {len(rows)} runs: {worst}")


def main(argv: list[str] | None = None) -> None:
    parser = Parser("Train the tiny demo recipe over several seeds and thread counts.", __doc__.split("\n")[3].strip())
    parser.add_argument(
        "--demo", type=Path, required=True, help="a finished demo output folder (recipes/tiny/demo.py --output)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="the demo's --quick step counts")
    parser.add_argument("--output", type=Path, default=None, help="default: <demo>/seeds[-quick]")
    args = parser.parse_args(argv)
    demo = args.demo.resolve()
    mode = "quick" if args.quick else "full"
    output = (args.output or demo / ("seeds-quick" if args.quick else "seeds")).resolve()
    runs = [(seed, threads) for threads in args.threads for seed in args.seeds]

    def one(run_: tuple[int, int]) -> dict:
        seed, threads = run_
        row = train_and_score(demo, output / f"seed{seed}-threads{threads}", seed, threads, STEPS[mode])
        print(json.dumps({k: v for k, v in row.items() if k != "chance"}), flush=True)
        return row

    rows = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        rows += pool.map(one, [r for r in runs if r[1] == 1])
    rows += [one(r) for r in runs if r[1] != 1]
    print_table(rows)
    (output / "table.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(run(main))
