"""recipes/sft.py, with the row ids of every streamed batch it trains on appended to
<output_dir>/trained-rank<process>.jsonl: what the two-process streaming test compares."""

import json
import sys
from pathlib import Path

from recipes import sft


remember = sft.AllavaSFTTrainer.note_stream_batch


def record(self, position: dict) -> None:
    log = Path(self.args.output_dir) / f"trained-rank{self.args.process_index}.jsonl"
    with log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"step": self.state.global_step + 1, "ids": position["ids"]}) + "\n")
    remember(self, position)


if __name__ == "__main__":
    sft.AllavaSFTTrainer.note_stream_batch = record
    sys.exit(sft.main())
