"""TextVQA accuracy as the TextVQA/mmf evaluator computes it (the `m4c_evaluator.py` LLaVA ships).

Followed: haotian-liu/LLaVA llava/eval/m4c_evaluator.py (EvalAIAnswerProcessor + TextVQAAccuracyEvaluator),
itself taken from facebookresearch/mmf. Its normaliser differs from the older VQA-challenge one on purpose here:
commas and question marks are deleted before the punctuation pass (so "10,000-20,000" ends as "10000 20000"),
"'s" is split off ("john's" -> "john 's"), and only its own contraction table applies. Each of the human answers is
left out in turn; a prediction scores min(#matches among the other answers / 3, 1), averaged over the left-out ones.
"""

import re

import datasets
import evaluate


_DESCRIPTION = "TextVQA accuracy (leave-one-annotator-out, min(#match/3, 1)) with the m4c answer normaliser."
_CITATION = "Singh et al., Towards VQA Models That Can Read, CVPR 2019; mmf/LLaVA m4c_evaluator.py."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of answer strings (empty string when nothing could be parsed).
    references: list of lists of reference answers (10 per question for TextVQA/VQAv2).
Returns:
    vqa_accuracy: mean accuracy in [0, 1].
    per_sample: the accuracy of each prediction.
Example:
    >>> metric.compute(predictions=["two"], references=[["2"] * 10])["vqa_accuracy"]
    1.0
"""

# The evaluator's punctuation list ("?" and "," never survive its tokenising step, so they never reach it).
PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
NUMBER_WORDS = dict(
    zip("none zero one two three four five six seven eight nine ten".split(), "0 0 1 2 3 4 5 6 7 8 9 10".split())
)
ARTICLES = {"a", "an", "the"}
# The evaluator's contraction table (key=value; keys with upper case letters can never match lower-cased text and
# identity entries change nothing, so both are left out). Quirks kept: "somebody'd" becomes "somebodyd".
_CONTRACTIONS = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've couldnt've=couldn't've
didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've hadn'tve=hadn't've hasnt=hasn't
havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd howll=how'll hows=how's isnt=isn't
itd=it'd itd've=it'd've it'dve=it'd've itll=it'll maam=ma'am mightnt=mightn't mightnt've=mightn't've
mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've neednt=needn't notve=not've oclock=o'clock
oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've
shouldve=should've shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd
someoned've=someone'd've someone'dve=someone'd've someonell=someone'll someones=someone's somethingd=something'd
somethingd've=something'd've something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd theyd've=they'd've
they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've
we'dve=we'd've weve=we've werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's
whered=where'd wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll yall'd've=y'all'd've
y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've you'dve=you'd've youll=you'll youre=you're
youve=you've
"""
CONTRACTIONS = dict(pair.split("=", 1) for pair in _CONTRACTIONS.split())
# The evaluator's pattern `(?!<=\d)(\.)(?!\d)` starts with a look-ahead that can never fail before a ".", so it is
# a period not followed by a digit. It is applied with `re.UNICODE` passed as the count: at most 32 are removed.
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_COUNT = 32


def normalize_answer(text: str) -> str:
    """The evaluator's answer processing: tokenise, punctuation, periods, number words, articles, contractions."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    spaced = text
    for mark in PUNCTUATION:
        # A mark next to a space is deleted, elsewhere it becomes a space (tested on the text before this loop).
        text = text.replace(mark, "" if (f"{mark} " in spaced or f" {mark}" in spaced) else " ")
    text = _PERIOD.sub("", text, count=_PERIOD_COUNT)
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES)


def vqa_score(prediction: str, references: list[str]) -> float:
    """Leave-one-annotator-out VQA accuracy of one prediction."""
    if not references:
        raise ValueError("vqa_accuracy: a question has no reference answers.")
    prediction = normalize_answer(prediction)
    answers = [normalize_answer(answer) for answer in references]
    total = 0.0
    for left_out in range(len(answers)):
        matches = sum(answer == prediction for index, answer in enumerate(answers) if index != left_out)
        total += min(matches / 3.0, 1.0)
    return total / len(answers)


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

    def _compute(self, predictions, references):
        per_sample = [vqa_score(prediction or "", list(refs)) for prediction, refs in zip(predictions, references)]
        return {"vqa_accuracy": sum(per_sample) / len(per_sample) if per_sample else 0.0, "per_sample": per_sample}
