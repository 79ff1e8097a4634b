"""Append-only per-sample cache: a crashed or interrupted run continues without redoing finished samples.

Line 1 holds the run settings that decide a sample's result (model, prompt variant, generation and judge settings,
data provenance); later lines are one JSON record each, flushed and fsync'd as soon as the sample is done. A later
record for the same id replaces an earlier one (a judge failure re-judged on resume).
"""

import json
import os
from pathlib import Path


class SampleCache:
    def __init__(self, path: Path, settings: dict):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if self.path.exists() and self.path.stat().st_size > 0:
            self._read(settings)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as handle:
                handle.write(json.dumps({"settings": settings}, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def _read(self, settings: dict) -> None:
        lines = self.path.read_text(encoding="utf-8").rstrip("\n").split("\n")
        stored = json.loads(lines[0]).get("settings")
        if stored != json.loads(json.dumps(settings)):
            changed = sorted(key for key in {**stored, **settings} if stored.get(key) != settings.get(key))
            raise ValueError(
                f"{self.path}: cached samples were made with other settings ({', '.join(changed)} differ); "
                "use another --output folder or delete this file to start over."
            )
        for number, line in enumerate(lines[1:], start=2):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                if number == len(lines):  # the process died mid-write: drop the torn line, that sample is redone
                    self._truncate_last_line()
                    break
                raise ValueError(f"{self.path}, line {number}: not valid JSON ({error}).") from error
            self.records[record["id"]] = record

    def _truncate_last_line(self) -> None:
        data = self.path.read_bytes().rstrip(b"\n")
        with self.path.open("wb") as handle:
            handle.write(data[: data.rfind(b"\n") + 1])
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records[record["id"]] = record
