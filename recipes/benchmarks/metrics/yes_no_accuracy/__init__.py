"""The yes_no_accuracy metric lives in yes_no_accuracy.py (loaded by path with evaluate.load)."""
