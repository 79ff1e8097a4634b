"""VQA accuracy with the standard VQA answer normalisation (our own implementation of the published rules).

`mode="vqa"` (TextVQA, VQAv2): each of the human answers is left out in turn; a prediction scores
min(#matches among the other answers / 3, 1), averaged over the left-out answers.
`mode="exact"` (GQA): 1 if the normalised prediction equals any normalised reference.
"""

import re

import datasets
import evaluate


_DESCRIPTION = "VQA accuracy (10-annotator leave-one-out, min(#match/3, 1)) or normalised exact match."
_CITATION = "Antol et al., VQA: Visual Question Answering, ICCV 2015; evaluation rules of the VQA challenge."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of answer strings (empty string when nothing could be parsed).
    references: list of lists of reference answers (10 per question for TextVQA/VQAv2).
    mode: "vqa" (default) or "exact".
Returns:
    vqa_accuracy: mean accuracy in [0, 1].
    per_sample: the accuracy of each prediction.
Example:
    >>> metric.compute(predictions=["two"], references=[["2"] * 10])["vqa_accuracy"]
    1.0
"""

# Punctuation the VQA rules strip; the apostrophe is kept so contractions survive.
PUNCTUATION = [
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = {"a", "an", "the"}
# Contractions written without the apostrophe are restored; forms that are also plain words (well, were, shed,
# hell, ill, lets, wed, id) are left alone.
_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hasn't haven't he'd he's how'd how'll
how's i'm i've isn't it'd it'll ma'am mightn't might've mustn't must've needn't not've o'clock oughtn't shan't
she's should've shouldn't somebody'd someone'd someone'll someone's something'd that's there'd there're there's
they'd they'll they're they've wasn't we've weren't what'll what're what's what've when's where'd where's where've
who'd who'll who's who've why'd why's won't would've wouldn't y'all you'd you'll you're you've
""".split()
CONTRACTIONS = {word.replace("'", ""): word for word in _CONTRACTIONS}
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_DECIMAL = re.compile(r"\.(?!\d)")


def strip_punctuation(text: str) -> str:
    """Drop punctuation next to a space (or every comma-like mark in '1,000'-style text); elsewhere it splits words."""
    has_number_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in PUNCTUATION:
        if f"{mark} " in text or f" {mark}" in text or has_number_comma:
            text = text.replace(mark, "")
        else:
            text = text.replace(mark, " ")
    return _PERIOD_NOT_DECIMAL.sub("", text)


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation, number words -> digits, drop articles, restore contractions."""
    text = " ".join(text.replace("\n", " ").replace("\t", " ").split())
    text = strip_punctuation(text)
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word in ARTICLES:
            continue
        words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_score(prediction: str, references: list[str]) -> float:
    """Leave-one-annotator-out VQA accuracy of one prediction."""
    if not references:
        raise ValueError("vqa_accuracy: a question has no reference answers.")
    prediction = normalize_answer(prediction)
    answers = [normalize_answer(answer) for answer in references]
    if len(answers) == 1:
        return float(prediction == answers[0])
    total = 0.0
    for left_out in range(len(answers)):
        matches = sum(answer == prediction for index, answer in enumerate(answers) if index != left_out)
        total += min(matches / 3.0, 1.0)
    return total / len(answers)


def exact_score(prediction: str, references: list[str]) -> float:
    prediction = normalize_answer(prediction)
    return float(any(prediction == normalize_answer(answer) for answer in references))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.List(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, mode: str = "vqa"):
        if mode not in ("vqa", "exact"):
            raise ValueError(f"vqa_accuracy: mode must be 'vqa' or 'exact', got {mode!r}")
        score = vqa_score if mode == "vqa" else exact_score
        per_sample = [score(prediction or "", list(refs)) for prediction, refs in zip(predictions, references)]
        return {"vqa_accuracy": sum(per_sample) / len(per_sample) if per_sample else 0.0, "per_sample": per_sample}
