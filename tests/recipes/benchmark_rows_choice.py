"""Fixture writers, in the public row schemas, for the multiple-choice benchmarks."""

from pathlib import Path

from datasets import Image, List, Value

from tests.recipes.fixture_media import picture, save_split


def mmvp(folder: Path) -> Path:
    rows = [
        {
            "Index": 1,
            "Question": "Are the butterfly's wings closer to being open or closed?",
            "Options": "(a) Open (b) Closed",
            "Correct Answer": "(a)",
            "image": picture(0),
        },
        {
            "Index": 2,
            "Question": "Are the butterfly's wings closer to being open or closed?",
            "Options": "(a) Open (b) Closed",
            "Correct Answer": "(b)",
            "image": picture(1),
        },
        {
            "Index": 3,
            "Question": "Is the dog facing left or right?",
            "Options": "(a) Left (b) Right",
            "Correct Answer": "(a)",
            "image": picture(2),
        },
        {
            "Index": 4,
            "Question": "Is the dog facing left or right?",
            "Options": "(a) Left (b) Right",
            "Correct Answer": "(b)",
            "image": picture(3),
        },
    ]
    save_split(
        folder,
        "train",
        rows,
        {
            "Index": Value("int64"),
            "Question": Value("string"),
            "Options": Value("string"),
            "Correct Answer": Value("string"),
            "image": Image(),
        },
    )
    return folder


def mmbench(folder: Path, config: str = "en") -> Path:
    def row(index, question, options, answer, hint=None):
        letters = dict(zip("ABCD", options + [None] * (4 - len(options))))
        return {
            "index": index,
            "question": question,
            "hint": hint,
            **letters,
            "answer": answer,
            "category": "attribute_recognition",
            "L2-category": "finegrained_perception (instance-level)",
            "source": "MMBench",
            "split": "dev",
            "image": picture(index % 5),
        }

    rows = [
        row(0, "What colour is the square?", ["red", "green", "blue", "yellow"], "A", hint="nan"),
        row(1, "Which shape is shown?", ["circle", "square"], "B", hint="The picture shows one shape."),
        row(1_000_000, "What colour is the square?", ["green", "blue", "yellow", "red"], "D", hint="nan"),
    ]
    features = {
        "index": Value("int64"),
        "question": Value("string"),
        "hint": Value("string"),
        **{letter: Value("string") for letter in "ABCD"},
        "answer": Value("string"),
        "category": Value("string"),
        "L2-category": Value("string"),
        "source": Value("string"),
        "split": Value("string"),
        "image": Image(),
    }
    save_split(folder / config, "dev", rows, features)
    return folder


def seed_bench(folder: Path) -> Path:
    def row(question_id, data_type, answer, images):
        return {
            "question_id": question_id,
            "question": "How many towels are in the image?",
            "choice_a": "One",
            "choice_b": "Two",
            "choice_c": "Three",
            "choice_d": "Four",
            "answer": answer,
            "data_type": data_type,
            "question_type_id": 2,
            "image": images,
        }

    rows = [
        row("101669_5", "image", "A", [picture(0)]),
        row("v1032_1", "video", "B", [picture(1), picture(2)]),
        row("101670_6", "image", "C", [picture(3)]),
    ]
    features = {
        "question_id": Value("string"),
        "question": Value("string"),
        **{f"choice_{c}": Value("string") for c in "abcd"},
        "answer": Value("string"),
        "data_type": Value("string"),
        "question_type_id": Value("int64"),
        "image": List(Image()),
    }
    save_split(folder, "test", rows, features)
    return folder


def scienceqa(folder: Path) -> Path:
    common = {
        "task": "closed choice",
        "grade": "grade2",
        "subject": "natural science",
        "topic": "biology",
        "category": "Classification",
        "skill": "Identify animals",
        "lecture": "",
        "solution": "",
    }
    rows = [
        {
            "image": picture(0),
            "question": "Which animal's feet are also adapted for swimming?",
            "choices": ["blue-footed booby", "crested porcupine"],
            "answer": 0,
            "hint": "Blue-footed boobies live on tropical islands.",
            **common,
        },
        {
            "image": picture(1),
            "question": "Which tense does the sentence use?",
            "choices": ["past", "present", "future"],
            "answer": 2,
            "hint": "",
            **common,
        },
    ]
    features = {
        "image": Image(),
        "question": Value("string"),
        "choices": List(Value("string")),
        "answer": Value("int8"),
        "hint": Value("string"),
        **{key: Value("string") for key in common},
    }
    save_split(folder / "ScienceQA-IMG", "test", rows, features)
    return folder


def mmmu(folder: Path) -> Path:
    def row(row_id, question, options, answer, question_type, images):
        cells = {f"image_{n}": images[n - 1] if n <= len(images) else None for n in range(1, 8)}
        return {
            "id": row_id,
            "question": question,
            "options": options,
            "explanation": "",
            **cells,
            "img_type": "['Diagrams']",
            "answer": answer,
            "topic_difficulty": "Medium",
            "question_type": question_type,
            "subfield": "Financial Accounting",
        }

    rows = [
        row(
            "validation_Accounting_1",
            "<image 1> What is the net income?",
            "['$1,000', '$2,000', '$3,000']",
            "B",
            "multiple-choice",
            [picture(0)],
        ),
        row(
            "validation_Math_7",
            "<image 1> <image 2> What is x in the figure?",
            "[]",
            "12.5",
            "open",
            [picture(1), picture(2)],
        ),
    ]
    features = {
        "id": Value("string"),
        "question": Value("string"),
        "options": Value("string"),
        "explanation": Value("string"),
        **{f"image_{n}": Image() for n in range(1, 8)},
        "img_type": Value("string"),
        "answer": Value("string"),
        "topic_difficulty": Value("string"),
        "question_type": Value("string"),
        "subfield": Value("string"),
    }
    save_split(folder, "validation", rows, features)
    return folder


def mathvista(folder: Path) -> Path:
    rows = [
        {
            "pid": "1",
            "question": "When a spring does work on an object, ...",
            "image": "images/1.jpg",
            "decoded_image": picture(0),
            "choices": None,
            "unit": None,
            "precision": 1.0,
            "answer": "1.2",
            "question_type": "free_form",
            "answer_type": "float",
            "query": "Hint: answer with a floating-point number with one decimal place.\nQuestion: What is the work?",
        },
        {
            "pid": "2",
            "question": "Which is the largest bar?",
            "image": "images/2.jpg",
            "decoded_image": picture(1),
            "choices": ["red", "green", "blue"],
            "unit": None,
            "precision": None,
            "answer": "green",
            "question_type": "multi_choice",
            "answer_type": "text",
            "query": "Hint: answer with the option letter.\nQuestion: Which is the largest bar?\n"
            "Choices:\n(A) red\n(B) green\n(C) blue",
        },
    ]
    features = {
        "pid": Value("string"),
        "question": Value("string"),
        "image": Value("string"),
        "decoded_image": Image(),
        "choices": List(Value("string")),
        "unit": Value("string"),
        "precision": Value("float64"),
        "answer": Value("string"),
        "question_type": Value("string"),
        "answer_type": Value("string"),
        "query": Value("string"),
    }
    save_split(folder, "testmini", rows, features)
    return folder
