"""Fixture writers, in the public row schemas, for the short-answer, yes/no and judged benchmarks."""

import json
from pathlib import Path

from datasets import Dataset, Image, Value

from bench.scale_eval import textvqa_features
from tests.recipes.fixture_media import picture, png_base64, save_split


def gqa(folder: Path) -> Path:
    questions = [
        {
            "id": "201307251",
            "imageId": "n1",
            "question": "What colour is the box?",
            "answer": "red",
            "fullAnswer": "The box is red.",
            "isBalanced": True,
        },
        {
            "id": "201640614",
            "imageId": "n2",
            "question": "Is the sky blue?",
            "answer": "no",
            "fullAnswer": "No, the sky is green.",
            "isBalanced": True,
        },
        {
            "id": "20968078",
            "imageId": "n1",
            "question": "What is on the table?",
            "answer": "box",
            "fullAnswer": "A box is on the table.",
            "isBalanced": True,
        },
    ]
    save_split(
        folder / "testdev_balanced_instructions",
        "testdev",
        questions,
        {
            "id": Value("string"),
            "imageId": Value("string"),
            "question": Value("string"),
            "answer": Value("string"),
            "fullAnswer": Value("string"),
            "isBalanced": Value("bool"),
        },
    )
    images = [{"id": image_id, "image": picture(i)} for i, image_id in enumerate(["n0", "n1", "n2"])]
    save_split(folder / "testdev_balanced_images", "testdev", images, {"id": Value("string"), "image": Image()})
    return folder


def textvqa(folder: Path) -> Path:
    rows = [
        {
            "question_id": 34602,
            "question": "what is the brand of this camera?",
            "image_id": "0054c91397f2fe05",
            "image": picture(0),
            "answers": ["nous les gosses"] * 3 + ["dakota"] * 7,
            "ocr_tokens": ["dakota", "digital", "nous"],
        },
        {
            "question_id": 34603,
            "question": "what does the small white text spell?",
            "image_id": "0054c91397f2fe05",
            "image": picture(0),
            "answers": ["copenhagen"] * 10,
            "ocr_tokens": ["copenhagen"],
        },
    ]
    (folder / "data").mkdir(parents=True)
    path = folder / "data" / "validation-00000-of-00001.parquet"
    Dataset.from_list(rows, features=textvqa_features()).to_parquet(str(path))
    return folder


def mme(folder: Path) -> Path:
    rows = []
    for category, image_name, index in [
        ("existence", "000000006040.jpg", 0),
        ("count", "000000015254.jpg", 1),
        ("code_reasoning", "0020.png", 2),
        ("numerical_calculation", "0001.png", 3),
    ]:
        rows.append(
            {
                "question_id": image_name,
                "image": picture(index),
                "answer": "Yes",
                "category": category,
                "question": "Is there a train in this image? Please answer yes or no.",
            }
        )
        rows.append(
            {
                "question_id": image_name,
                "image": picture(index),
                "answer": "No",
                "category": category,
                "question": "Is there a bed in this image? Please answer yes or no.",
            }
        )
    save_split(
        folder,
        "test",
        rows,
        {
            "question_id": Value("string"),
            "image": Image(),
            "question": Value("string"),
            "answer": Value("string"),
            "category": Value("string"),
        },
    )
    return folder


def hallusionbench(folder: Path) -> Path:
    def row(subcategory, set_id, figure_id, question_id, gt_answer, image):
        return {
            "category": "VD",
            "subcategory": subcategory,
            "visual_input": "1",
            "set_id": set_id,
            "figure_id": figure_id,
            "sample_note": "circle",
            "question_id": question_id,
            "question": "Is the left orange circle the same size as the right one?",
            "gt_answer_details": "yes" if gt_answer == "1" else "no",
            "gt_answer": gt_answer,
            "filename": f"./VD/illusion/{set_id}_{figure_id}.png",
            "image": image,
        }

    rows = [
        row("illusion", "0", "0", "0", "1", picture(0)),
        row("illusion", "0", "1", "0", "0", picture(1)),
        row("illusion", "0", "0", "1", "0", picture(0)),
    ]
    features = {key: Value("string") for key in rows[0] if key != "image"} | {"image": Image()}
    save_split(folder, "image", rows, features)
    return folder


def mmvet(folder: Path) -> Path:
    rows = [
        {
            "question_id": "v1_0",
            "image": picture(0),
            "question": "What is x in the equation?",
            "answer": "-1<AND>-5",
            "image_source": "MathQA",
            "capability": "ocr,math",
        },
        {
            "question_id": "v1_1",
            "image": picture(1),
            "question": "What colour is the box?",
            "answer": "red",
            "image_source": "COCO",
            "capability": "rec",
        },
    ]
    save_split(folder, "test", rows, {key: Value("string") for key in rows[0] if key != "image"} | {"image": Image()})
    return folder


def llava_w(folder: Path) -> Path:
    rows = [
        {
            "question_id": 0,
            "question": "What is the name of this famous sight?",
            "image": picture(0),
            "caption": "A red square on a white wall.",
            "gpt_answer": "It is a red square.",
            "category": "conv",
            "image_id": "001",
        },
        {
            "question_id": 1,
            "question": "Describe this photo in detail.",
            "image": picture(1),
            "caption": "A green square.",
            "gpt_answer": "A plain green square fills the picture.",
            "category": "detail",
            "image_id": "002",
        },
    ]
    features = {key: Value("string") for key in rows[0] if key not in ("image", "question_id")}
    save_split(folder, "train", rows, features | {"question_id": Value("int64"), "image": Image()})
    return folder


def vicuna80(folder: Path) -> Path:
    rows = [
        {
            "question_id": 1,
            "category": "generic",
            "turns": ["How can I improve my time management skills?"],
            "reference": "Plan the day, set priorities and limit distractions.",
        },
        {
            "question_id": 2,
            "category": "knowledge",
            "turns": ["What is the boiling point of water?"],
            "reference": "100 degrees Celsius at sea level.",
        },
        {"question_id": 3, "category": "math", "turns": ["What is 12 times 12?"], "reference": "144."},
    ]
    folder.mkdir(parents=True)
    (folder / "question.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def touchstone(folder: Path) -> Path:
    rows = [
        {
            "index": 0,
            "image": png_base64(picture(0)),
            "question": "Which city is shown in the picture?",
            "human_annotation": "A red square.",
            "gpt4_ha_answer": "It shows a red square, not a city.",
            "category": "Visual Recognition",
            "task_name": "landmark recognition",
        },
        {
            "index": 1,
            "image": png_base64(picture(1)),
            "question": "Write a poem about the picture.",
            "human_annotation": "A green square.",
            "gpt4_ha_answer": "Green square, calm and plain.",
            "category": "Visual Storytelling",
            "task_name": "poem",
        },
    ]
    save_split(
        folder, "test", rows, {key: Value("string") for key in rows[0] if key != "index"} | {"index": Value("int64")}
    )
    return folder


def mllm_bench(folder: Path) -> Path:
    rows = [
        {
            "question_id": 1,
            "image": picture(2),
            "question": "What might happen next in this scene?",
            "reference": "The blue square will stay where it is.",
            "capability": "Reasoning",
        },
        {
            "question_id": 2,
            "image": picture(3),
            "question": "Describe the mood of the picture.",
            "reference": "Bright and cheerful yellow.",
            "capability": "Perception",
        },
    ]
    features = {
        "question_id": Value("int64"),
        "image": Image(),
        "question": Value("string"),
        "reference": Value("string"),
        "capability": Value("string"),
    }
    save_split(folder, "test", rows, features)
    return folder
