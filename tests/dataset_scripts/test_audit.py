"""The image-text audit: ranking logic with an encoder that knows the shapes-world facts, and the real loading path
with a tiny random CLIP saved to a folder."""

import json
import random

import numpy as np
import pytest

from dataset_scripts.audit import Audit, main, plan_batches, row_text
from dataset_scripts.dataset_writer import write_subsets
from recipes.tiny import shapes_world
from toolkit.cli import InputError


FACTS = ("colour", "shape", "count", "position")
PROVENANCE = {"teacher_model": None, "prompt_version": None, "prompt_hash": None, "origin": None}


def one_hot(values: dict[str, str | None]) -> np.ndarray:
    parts = []
    for fact in FACTS:
        choices = shapes_world.CHOICES[fact]
        parts += [1.0 if values.get(fact) == choice else 0.0 for choice in choices]
    vector = np.array(parts)
    return vector / max(np.linalg.norm(vector), 1e-12)


class FactsEncoder:
    """Image features: the scene's colour, shape, count and position (from the PNG metadata); text features: the
    same facts where the text names exactly one keyword of each. Cosine of the two = share of agreeing facts."""

    context = 77

    def images(self, images):
        scenes = [shapes_world.scene_from_image(data) for data in images]
        return np.stack([one_hot(shapes_world.scene_facts(scene)) for scene in scenes])

    def texts(self, texts):
        features = [one_hot({fact: shapes_world.match_keyword(text, fact) for fact in FACTS}) for text in texts]
        return np.stack(features), [len(text.split()) for text in texts]


def scene_of(row):
    return shapes_world.scene_from_image(row["image"]["bytes"])


def named_facts(row):
    text = row["conversations"][-1]["value"]
    return [fact for fact in FACTS if shapes_world.match_keyword(text, fact)]


def plant_mismatches(rows, count, rng):
    """Give `count` rows the image of another row that contradicts every fact their text names; returns their ids."""
    victims = rng.sample(range(len(rows)), count)
    originals = [row["image"] for row in rows]
    for victim in victims:
        facts = named_facts(rows[victim])
        own = shapes_world.scene_facts(scene_of(rows[victim]))
        donors = [
            i for i, image in enumerate(originals)
            if all(shapes_world.scene_facts(shapes_world.scene_from_image(image["bytes"]))[f] != own[f] for f in facts)
        ]  # fmt: skip
        image = originals[rng.choice(donors)]
        rows[victim]["image"], rows[victim]["images"] = image, [image]
    return {rows[victim]["id"] for victim in victims}


def shapes_dataset(folder, rng):
    captions = shapes_world.dataset_rows("caption", 160, seed=1, max_words=40, **PROVENANCE)
    instructs = shapes_world.dataset_rows("instruct", 160, seed=2, **PROVENANCE)
    texts = shapes_world.dataset_rows("text", 10, seed=3, **PROVENANCE)
    planted = plant_mismatches(captions, 16, rng) | plant_mismatches(instructs, 16, rng)
    rows = [("caption_shapes", r) for r in captions] + [("instruct_shapes", r) for r in instructs]
    write_subsets(rows + [("text", r) for r in texts], folder)
    return planted


def scores(output):
    return [json.loads(line) for line in (output / "scores.jsonl").read_text().splitlines()[1:]]


def test_planted_mismatches_are_found_and_clean_rows_kept(tmp_path):
    planted = shapes_dataset(tmp_path / "ds", random.Random(0))
    summary = Audit(tmp_path / "ds", tmp_path / "audit", seed=0, batch_size=32).run(FactsEncoder(), "facts", False)
    rows = scores(tmp_path / "audit")
    assert len(rows) == 320 and len({(r["subset"], r["index"]) for r in rows}) == 320
    flagged = {row["id"] for row in rows if row["flagged"]}
    recall = len(flagged & planted) / len(planted)
    false_positive_rate = len(flagged - planted) / (len(rows) - len(planted))
    assert recall >= 0.9 and false_positive_rate <= 0.02, (recall, false_positive_rate)
    assert summary["subsets"]["text"] == {"rows": 10, "no_image": 10, "scored": 0, "flagged": 0, "truncated": 0}
    assert summary["flagged"] == len(flagged)
    assert {row["id"] for row in summary["lowest"][:16]} <= planted
    # a clean caption names four facts: only another scene with the same four (1 in 216) ties with its own image; a
    # clean answer naming one fact ("on the right") is true of a third of all images, so now and then half its batch
    # ties with it: the false positives
    clean_captions = [row for row in rows if row["id"] not in planted and row["subset"] == "caption_shapes"]
    assert min(row["margin"] for row in clean_captions) >= 0.5 and max(row["rank"] for row in clean_captions) < 0.1
    assert all(row["subset"] == "instruct_shapes" and row["score"] == row["baseline"] for row in rows
               if row["flagged"] and row["id"] not in planted)  # fmt: skip


def test_a_rerun_skips_scored_rows_and_finishes_a_torn_run(tmp_path):
    shapes_dataset(tmp_path / "ds", random.Random(1))
    audit = Audit(tmp_path / "ds", tmp_path / "audit", batch_size=40)
    audit.run(FactsEncoder(), "facts", False)
    complete = (tmp_path / "audit" / "scores.jsonl").read_bytes()
    audit.run(FactsEncoder(), "facts", False)
    assert (tmp_path / "audit" / "scores.jsonl").read_bytes() == complete
    lines = complete.splitlines(keepends=True)
    (tmp_path / "audit" / "scores.jsonl").write_bytes(b"".join(lines[:100]) + lines[100][:30])  # killed mid-write
    summary = audit.run(FactsEncoder(), "facts", False)
    assert sorted(scores(tmp_path / "audit"), key=str) == sorted(
        [json.loads(line) for line in lines[1:]], key=str
    )  # the same rows, scored the same way
    assert summary["subsets"]["caption_shapes"]["scored"] == 160
    with pytest.raises(InputError, match="other settings"):
        Audit(tmp_path / "ds", tmp_path / "audit", seed=5, batch_size=40).run(FactsEncoder(), "facts", False)


def test_a_siglip_folder_loads_with_its_full_context_padding(tmp_path):
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    from dataset_scripts.dual_encoder import HFDualEncoder
    from recipes.tiny.models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    text = tower | {"vocab_size": len(tokenizer), "max_position_embeddings": 16}
    torch.manual_seed(0)
    SiglipModel(
        SiglipConfig(text_config=text, vision_config=tower | {"image_size": 56, "patch_size": 14})
    ).save_pretrained(tmp_path)
    processor = SiglipProcessor(
        image_processor=SiglipImageProcessor(size={"height": 56, "width": 56}), tokenizer=tokenizer
    )
    processor.save_pretrained(tmp_path)
    encoder = HFDualEncoder(str(tmp_path), "cpu")
    assert (encoder.context, encoder.padding) == (16, "max_length")
    image = shapes_world.png_bytes(shapes_world.random_scene(random.Random(0)), 56)
    features, lengths = encoder.texts(["a red circle", "a very long text " * 10])
    assert encoder.images([image]).shape == (1, 32) and features.shape == (2, 32) and lengths[1] > 16
    assert np.allclose(np.linalg.norm(features, axis=1), 1)


def test_texts_and_batches():
    turns = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Red."}]
    assert row_text("instruct_laion", turns) == "What colour? Red."
    assert row_text("caption_laion", turns) == "Red."
    keys = [("a", i) for i in range(70)]
    batches = plan_batches(keys, seed=3, batch_size=32)
    assert [len(b) for b in batches] == [32, 38] and sorted(sum(batches, [])) == keys
    assert plan_batches(keys, seed=3, batch_size=32) == batches != plan_batches(keys, seed=4, batch_size=32)


def save_tiny_clip(folder):
    """A random two-tower CLIP with a 16-token text context and its processor, built offline."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from recipes.tiny.models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.model_max_length = 16
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    text |= {"vocab_size": len(tokenizer), "max_position_embeddings": 16, "eos_token_id": tokenizer.eos_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    vision |= {"image_size": 56, "patch_size": 14}
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def test_cli_with_a_tiny_clip_from_a_folder_on_a_save_to_disk_dataset(tmp_path, capsys):
    import datasets

    from dataset_scripts.schema import FEATURES

    save_tiny_clip(tmp_path / "clip")
    captions = shapes_world.dataset_rows("caption", 12, seed=1, image_size=56, **PROVENANCE)
    texts = shapes_world.dataset_rows("text", 3, seed=2, **PROVENANCE)
    splits = {"caption_shapes": captions, "text": texts}
    datasets.DatasetDict(
        {k: datasets.Dataset.from_list(v, features=FEATURES) for k, v in splits.items()}
    ).save_to_disk(str(tmp_path / "ds"))
    argv = ["--dataset", str(tmp_path / "ds"), "--model", str(tmp_path / "clip"), "--output", str(tmp_path / "out")]
    assert main([*argv, "--batch-size", "4", "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert summary["context_tokens"] == 16 and summary["model"] == str(tmp_path / "clip")
    assert summary["subsets"]["caption_shapes"] == {
        "rows": 12, "no_image": 0, "scored": 12, "flagged": summary["flagged"], "truncated": 12,
    }  # fmt: skip
    assert summary["subsets"]["text"]["no_image"] == 3
    rows = scores(tmp_path / "out")
    assert all(row["others"] == 3 and -1 <= row["score"] <= 1 and row["tokens"] > 16 for row in rows)
    assert json.loads(capsys.readouterr().out)["subsets"]["caption_shapes"]["scored"] == 12


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--dataset", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 2
    assert "no subsets" in capsys.readouterr().err
    assert main(["--dataset", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err


def contradicting(scene):
    """A scene that differs from `scene` in colour, shape, count and position."""
    colours, shapes = list(shapes_world.COLOURS), list(shapes_world.SHAPES)
    return shapes_world.Scene(
        colour=colours[(colours.index(scene.colour) + 1) % len(colours)],
        shape=shapes[(shapes.index(scene.shape) + 1) % len(shapes)],
        count=scene.count % 3 + 1,
        size=scene.size,
        position=shapes_world.POSITIONS[(shapes_world.POSITIONS.index(scene.position) + 1) % 3],
    )


def test_build_dataset_audit_drops_the_mismatched_rows_and_the_card_says_so(synth, shapes_dir, tmp_path):
    from dataset_scripts.build_dataset import build
    from tests.dataset_scripts.helpers_synthesis import scene_of_record

    out = tmp_path / "out"
    synth("--mode", "caption-qa", "--input", str(shapes_dir), "--source-name", "shapes", output=out)
    (path,) = out.glob("records-*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for record in lines[:3]:  # captions of another picture
        record["description"] = shapes_world.describe(contradicting(scene_of_record(out, record)))
    path.write_text("".join(json.dumps(record) + "\n" for record in lines))
    stats = build([out], tmp_path / "ds", audit=("facts", FactsEncoder()), drop_mismatched=True)
    dropped = stats["audit"]["dropped"]
    assert dropped["caption_shapes"] == 3 and stats["subsets"]["caption_shapes"] == 21
    flagged = [row for row in scores(tmp_path / "ds" / "audit") if row["flagged"]]
    planted = {f"allava_shapes_cap_{record['key'][:16]}" for record in lines[:3]}
    assert {row["id"] for row in flagged if row["subset"] == "caption_shapes"} == planted
    assert sum(dropped.values()) == len(flagged) == sum(stats["audit"]["flagged"].values())
    import datasets

    kept = datasets.load_dataset(str(tmp_path / "ds"), "caption_shapes", split="train")
    assert len(kept) == 21 and not planted & set(kept["id"])
    card = (tmp_path / "ds" / "README.md").read_text()
    assert f"{len(flagged)} flagged rows were dropped (`--drop-mismatched`)" in card
    assert "Image-text audit with `facts`" in card and "| caption_shapes | 3 |" in card
    page = (tmp_path / "ds" / "report.html").read_text()
    section = page[page.index('<section id="audit">') :]
    section = section[: section.index("</section>")]  # the dropped rows still show, with their images
    assert all(f"caption_shapes · {row_id}</div>" in section for row_id in planted)
    assert section.count('<span class="badge">flagged, dropped</span>') >= 3 and "image not kept" not in section


def test_drop_mismatched_needs_audit(tmp_path, capsys):
    from dataset_scripts.build_dataset import main as build_main

    assert build_main(["--input", str(tmp_path), "--output", str(tmp_path / "ds"), "--drop-mismatched"]) == 2
    assert "--drop-mismatched needs --audit MODEL" in capsys.readouterr().err
