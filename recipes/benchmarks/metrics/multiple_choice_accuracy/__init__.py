"""The multiple_choice_accuracy metric lives in multiple_choice_accuracy.py (loaded by path with evaluate.load)."""
