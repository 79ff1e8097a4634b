"""The scores ALLaVA's paper reports (arXiv 2402.11684, v2), per benchmark column, for the results table."""

PAPER_MODELS = ("ALLaVA-Phi2", "ALLaVA-StableLM2", "ALLaVA-Phi3", "LLaVA-1.5-7B", "TinyLLaVA")
_COLUMNS = (
    "Vic-80 GQA HallB MME-P MMVP TouchSt TextVQA MME-C MathVista MM-Vet MMMU-val SQA-img LLaVA-W MLLM-B MMB-en "
    "MMB-cn SEED-img"
).split()
_ROWS = {
    "ALLaVA-Phi2": "49.4 48.8 24.8 1316.2 36.0 632.0 49.5 301.8 27.4 32.2 35.3 67.6 69.4 43.6 64.0 40.8 65.2",
    "ALLaVA-StableLM2": "38.8 49.8 25.3 1311.7 34.0 655.2 51.7 257.9 27.7 31.7 33.3 64.7 72.0 39.3 64.6 49.8 65.7",
    "ALLaVA-Phi3": "56.9 52.2 48.1 1382.3 32.7 667.8 53.0 347.1 32.9 37.8 41.1 64.0 68.5 54.8 68.1 55.3 69.0",
    "LLaVA-1.5-7B": "13.8 62.0 36.6 1504.4 24.7 594.9 58.2 324.6 25.0 31.1 35.1 66.8 65.4 23.0 64.3 58.3 66.1",
    "TinyLLaVA": "15.6 62.1 37.2 1465.5 33.3 663.5 60.3 281.1 30.3 37.5 38.4 73.0 70.8 29.8 69.7 42.8 70.4",
}
PAPER_SCORES = {
    column: {model: float(_ROWS[model].split()[index]) for model in PAPER_MODELS}
    for index, column in enumerate(_COLUMNS)
}


def paper_scores(column: str) -> dict[str, float]:
    """{model: score} for one column of the paper's table."""
    return dict(PAPER_SCORES[column])
