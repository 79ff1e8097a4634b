"""What a run will do and how long it will take: generations per benchmark up front, one bar, an ETA line.

Only the main process prints. Its bar counts the generations of its own share across all benchmarks; the shares
are even (batching.py), so its time to finish is the run's. After the first few batches one plain line gives the
ETA for the whole run, for logs where a bar does not render; the bar keeps it current. Batches run longest prompts
first, so that first estimate errs long.
"""

import time

from tqdm.auto import tqdm


ETA_AFTER_BATCHES = 3


class Progress:
    """The counts table (`plan_table`), then a bar updated per batch; use as a context manager."""

    def __init__(self, counts: dict[str, tuple[int, int]], share_total: int, world_size: int, enabled: bool):
        """`counts`: benchmark -> (samples, generations still to make, all processes); `share_total`: this
        process's generations."""
        self.enabled = enabled
        self.batches = 0
        self.done = 0
        self.start = time.monotonic()
        if enabled:
            print(plan_table(counts, world_size), flush=True)
        self.bar = tqdm(total=share_total, desc="generating", unit="answer", disable=not enabled)

    def update(self, generations: int, benchmark: str) -> None:
        self.bar.set_postfix_str(benchmark, refresh=False)
        self.bar.update(generations)
        self.batches += 1
        self.done += generations
        remaining = self.bar.total - self.done
        if self.enabled and self.batches == ETA_AFTER_BATCHES and remaining:
            elapsed = time.monotonic() - self.start
            eta = tqdm.format_interval(elapsed / self.done * remaining)
            self.bar.write(
                f"ETA {eta} for the remaining {remaining} generations of this share (from the first "
                f"{self.batches} batches, {self.done / elapsed:.2f} answers/s)"
            )

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def plan_table(counts: dict[str, tuple[int, int]], world_size: int) -> str:
    """One line per benchmark and a total: samples, generations to make, and the share of each process."""
    lines = [f"{'benchmark':16} {'samples':>8} {'to generate':>12}"]
    for name, (samples, todo) in counts.items():
        lines.append(f"{name:16} {samples:>8} {todo:>12}")
    total = sum(todo for _, todo in counts.values())
    cached = sum(samples for samples, _ in counts.values()) - total
    per_process = f", about {-(-total // world_size)} per process on {world_size}" if world_size > 1 else ""
    lines.append(f"{'total':16} {total + cached:>8} {total:>12}  ({cached} cached{per_process})")
    return "\n".join(lines)
