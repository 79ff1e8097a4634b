"""The seed sweep reads finished runs back instead of training them again, and reports the worst score per type."""

import json

from bench import demo_seeds


def write_results(folder, seed: int) -> None:
    values = {"colour": 1.0, "shape": 0.5 + 0.1 * seed, "count": 1.0, "position": 0.9 - 0.2 * seed}
    chance = {"colour": 1 / 6, "shape": 0.25, "count": 1 / 3, "position": 1 / 3}
    benchmarks = {f"shapes-{q}": {"value": values[q], "chance": chance[q]} for q in values}
    benchmarks["shapes-caption-facts"] = {"value": 0.9}
    benchmarks["shapes-caption-invented"] = {"value": 0.1}
    (folder / "stage2").mkdir(parents=True)
    (folder / "stage2" / "results.json").write_text(json.dumps({"benchmarks": benchmarks}))


def test_finished_runs_are_read_back_and_the_worst_run_is_reported(tmp_path, capsys):
    output = tmp_path / "seeds"
    for seed in (0, 1):
        write_results(output / f"seed{seed}-threads1", seed)
    # No demo folder exists: any attempt to train would fail, so passing means both runs were read back.
    demo_seeds.main(
        ["--demo", str(tmp_path / "missing"), "--seeds", "0", "1", "--threads", "1", "--output", str(output)]
    )
    printed = capsys.readouterr().out
    assert "worst over 2 runs: colour 1.00 (chance 0.17), shape 0.50 (chance 0.25)" in printed
    assert "position 0.70 (chance 0.33)" in printed
    assert [row["seed"] for row in json.loads((output / "table.json").read_text())] == [0, 1]


def test_each_run_trains_both_stages_with_its_seed_then_scores_them(tmp_path):
    stage1, stage2, evaluation = demo_seeds.stage_commands(tmp_path / "demo", tmp_path / "run", 3, (10, 20))
    assert stage1[stage1.index("--seed") + 1] == stage2[stage2.index("--seed") + 1] == "3"
    assert stage1[stage1.index("--max_steps") + 1] == "10" and stage2[stage2.index("--max_steps") + 1] == "20"
    assert stage2[stage2.index("--model_name_or_path") + 1] == str(tmp_path / "run" / "stage1")
    assert evaluation[evaluation.index("--model") + 1] == str(tmp_path / "run" / "stage2")
