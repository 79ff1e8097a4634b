"""One plain module per benchmark, plus the helpers they share.

Every benchmark module describes itself in one `Benchmark` record (benchmark.py): `BENCHMARK`, or one record per
part where two benchmarks share their scoring (mme.py: MME_PERCEPTION, MME_COGNITION; mmbench.py: MMBENCH_EN,
MMBENCH_CN). recipes/eval_benchmarks.py lists the records, in the paper's column order, and runs them. The module's
docstring names the row fields it reads and the official scorer it follows.
"""
