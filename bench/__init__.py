"""Speed and memory benchmarks: scripts that print markdown tables (figures in docs/benchmarks.md); shared parts in
`bench.common`. Run them as `python bench/<script>.py` or `python -m bench.<script>` after `pip install -e .`."""
