"""The vqa_accuracy metric lives in vqa_accuracy.py (loaded by path with evaluate.load)."""
