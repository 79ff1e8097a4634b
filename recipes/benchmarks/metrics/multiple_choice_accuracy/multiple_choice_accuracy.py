"""Multiple-choice accuracy over extracted option letters, with optional group scoring.

With `groups`, a group (one MMBench question under all its circular option shifts, one MMVP image pair) counts as
correct only when every item in it is correct: `group_accuracy` is MMBench's CircularEval and MMVP's pair accuracy.
"""

import datasets
import evaluate


_DESCRIPTION = "Accuracy of predicted option letters; optional all-correct-per-group accuracy (CircularEval, pairs)."
_CITATION = "Liu et al., MMBench (CircularEval), 2023; Tong et al., Eyes Wide Shut? (MMVP pairs), 2024."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted letters ("" when no option could be extracted; always wrong).
    references: list of gold letters.
    groups: optional list of group keys, one per item.
Returns:
    accuracy: fraction of items correct.
    per_sample: 1.0 / 0.0 per item.
    group_accuracy, num_groups: only with `groups`.
Example:
    >>> metric.compute(predictions=["A", "B"], references=["A", "A"], groups=["q1", "q1"])["group_accuracy"]
    0.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultipleChoiceAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, groups=None):
        per_sample = [
            float(bool(pred) and pred.strip().upper() == ref.strip().upper())
            for pred, ref in zip(predictions, references)
        ]
        result = {"accuracy": sum(per_sample) / len(per_sample) if per_sample else 0.0, "per_sample": per_sample}
        if groups is not None:
            if len(groups) != len(per_sample):
                raise ValueError(f"multiple_choice_accuracy: {len(groups)} groups for {len(per_sample)} predictions.")
            all_correct = {}
            for group, correct in zip(groups, per_sample):
                all_correct[group] = all_correct.get(group, True) and correct == 1.0
            result["group_accuracy"] = sum(all_correct.values()) / len(all_correct) if all_correct else 0.0
            result["num_groups"] = len(all_correct)
        return result
