"""How a synthesis run ended: one notion for chat and batch mode, told the same way everywhere.

The ending is decided once, from what the run counted, and the same line is the summary's `outcome`, the `outcome`
of the JSON line on stdout and the last line on stderr; its exit code is the process's:

    finished       every input of the shard is done, rejected or skipped                                 0
                   (nothing kept because every input was skipped: bad input, `error: no records ...`)   2
    stopped early  N inputs left: why (budget, failures at the teacher, the batch API), how to continue 3
    interrupted    Ctrl-C: N inputs left; what is finished is kept                                      3
    failed         the teacher refused (its error, scrubbed, and the endpoint) or a write failed        1
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.cli import EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE


FINISHED, STOPPED_EARLY, INTERRUPTED, FAILED = "finished", "stopped early", "interrupted", "failed"
RERUN = "rerun the same command to continue"


@dataclass(frozen=True)
class Ending:
    kind: str  # FINISHED, STOPPED_EARLY, INTERRUPTED or FAILED
    line: str  # one line, starting with the kind (or `error:` when nothing was kept)
    exit_code: int
    reason: str | None  # the summary's `stopped`: None when finished


@dataclass(frozen=True)
class RunCounts:
    """What an ending is decided from."""

    items: int  # inputs of this shard in this run
    left: int  # inputs neither done, rejected nor skipped (this run or earlier)
    done: int  # shard totals, all runs
    rejected: dict
    skipped: dict
    failed: int = 0  # inputs given up this run (their retries ran out)
    last_failure: str | None = None  # the last of those errors, scrubbed


def decide(
    counts: RunCounts, teacher: str, stop_reason: str | None, stop_message: str | None, interrupted: bool
) -> Ending:
    """The ending of a run (see the module notes); `teacher` names the endpoint(s) without credentials."""
    left = f"{counts.left} of {counts.items} inputs left"
    if stop_reason == "fatal":
        line = f"failed: {stop_message} (at {teacher}); {left}, finished records are kept"
        return Ending(FAILED, line, EXIT_FAILED, stop_reason)
    if stop_reason == "disk":
        line = f"failed: {stop_message}; the {counts.done} finished records are kept; free space and {RERUN}"
        return Ending(FAILED, line, EXIT_FAILED, stop_reason)
    if interrupted:
        return Ending(
            INTERRUPTED, f"interrupted: {left}; finished records are kept; {RERUN}", EXIT_INCOMPLETE, "interrupted"
        )
    if counts.left:
        why = stop_message or _failures(counts, teacher)
        how = "rerun with a higher --max-cost to continue" if stop_reason == "budget" else RERUN
        return Ending(
            STOPPED_EARLY, f"stopped early: {left}: {why}; {how}", EXIT_INCOMPLETE, stop_reason or "failures"
        )
    if not counts.done and not counts.rejected and counts.skipped:
        # Every input was left out before reaching the teacher: bad input. (Rejects wait for --retry-rejects.)
        line = f"error: no records: every input was skipped ({counts.skipped}); check --input"
        return Ending(FINISHED, line, EXIT_USAGE, None)
    line = (
        f"finished: every input of this shard is done, rejected or skipped ({counts.done} done, "
        f"rejected {counts.rejected}, skipped {counts.skipped})"
    )
    return Ending(FINISHED, line, EXIT_OK, None)


def _failures(counts: RunCounts, teacher: str) -> str:
    if not counts.failed:
        return "not every input was tried"
    return f"{counts.failed} failed at {teacher}; last: {counts.last_failure}"
