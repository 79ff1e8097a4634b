"""Yes/no accuracy, F1 with "yes" as the positive class, and optional per-group accuracy+.

With `groups` (MME: the two questions asked about one image), `accuracy_plus` is the fraction of groups whose
questions are all answered correctly (MME's acc+).
"""

import datasets
import evaluate


_DESCRIPTION = "Yes/no accuracy, precision/recall/F1 (positive = yes), yes-ratio, optional per-group accuracy+."
_CITATION = "Fu et al., MME: A Comprehensive Evaluation Benchmark for Multimodal Large Language Models, 2023."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of "yes" / "no" ("" when the answer held neither; always wrong, never a positive).
    references: list of "yes" / "no" (any case).
    groups: optional list of group keys, one per item.
Returns:
    accuracy, precision, recall, f1, yes_ratio, per_sample; accuracy_plus and num_groups with `groups`.
Example:
    >>> metric.compute(predictions=["yes", "no"], references=["yes", "yes"])["accuracy"]
    0.5
"""


def _label(text: str, where: str) -> str:
    label = (text or "").strip().lower()
    if label not in ("yes", "no", ""):
        raise ValueError(f"yes_no_accuracy: {where} must be 'yes', 'no' or '', got {text!r}")
    return label


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class YesNoAccuracy(evaluate.Metric):
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
        preds = [_label(p, f"predictions[{i}]") for i, p in enumerate(predictions)]
        refs = [_label(r, f"references[{i}]") for i, r in enumerate(references)]
        if "" in refs:
            raise ValueError(f"yes_no_accuracy: references[{refs.index('')}] is empty.")
        per_sample = [float(p == r) for p, r in zip(preds, refs)]
        true_pos = sum(p == "yes" and r == "yes" for p, r in zip(preds, refs))
        pred_pos = sum(p == "yes" for p in preds)
        gold_pos = sum(r == "yes" for r in refs)
        precision = true_pos / pred_pos if pred_pos else 0.0
        recall = true_pos / gold_pos if gold_pos else 0.0
        result = {
            "accuracy": sum(per_sample) / len(per_sample) if per_sample else 0.0,
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "yes_ratio": pred_pos / len(preds) if preds else 0.0,
            "per_sample": per_sample,
        }
        if groups is not None:
            if len(groups) != len(per_sample):
                raise ValueError(f"yes_no_accuracy: {len(groups)} groups for {len(per_sample)} predictions.")
            all_correct = {}
            for group, correct in zip(groups, per_sample):
                all_correct[group] = all_correct.get(group, True) and correct == 1.0
            result["accuracy_plus"] = sum(all_correct.values()) / len(all_correct) if all_correct else 0.0
            result["num_groups"] = len(all_correct)
        return result
