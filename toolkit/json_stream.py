"""The items of a file holding one JSON array, parsed one at a time.

ALLaVA-4V's release files are single JSON arrays of up to ~500K rows; `json.load` would hold every row as Python
objects at once (about 1 KB a row). This reader holds one item and one read chunk, whatever the file's size.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER_GOES_ON = frozenset("0123456789.eE+-")


class NotAJsonArray(ValueError):
    """The file's top-level value is not a JSON array."""


class _Reader:
    """A text file read in chunks, with a cursor into what has been read but not consumed."""

    def __init__(self, handle: TextIO, chunk_size: int):
        self.handle, self.chunk_size = handle, chunk_size
        self.buffer, self.pos, self.eof = "", 0, False

    def more(self) -> bool:
        """Read the next chunk (dropping what was consumed); False at the end of the file."""
        if self.eof:
            return False
        chunk = self.handle.read(self.chunk_size)
        self.buffer, self.pos, self.eof = self.buffer[self.pos :] + chunk, 0, not chunk
        return bool(chunk)

    def peek(self) -> str:
        """The next non-whitespace character, not consumed ('' at the end of the file)."""
        while True:
            self.pos = _WHITESPACE.match(self.buffer, self.pos).end()
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self.more():
                return ""

    def decode(self, decoder: json.JSONDecoder) -> object:
        """The JSON value at the cursor, reading on while it is cut by the chunk's end."""
        self.peek()
        while True:
            try:
                item, end = decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError:
                if self.more():
                    continue
                raise
            cut = end == len(self.buffer) or (isinstance(item, int | float) and self.buffer[end] in _NUMBER_GOES_ON)
            if cut and self.more():
                continue  # "-0." parses as 0 and "12" as 12: a number may go on in the next chunk
            self.pos = end
            return item

    def expect(self, characters: str, what: str) -> str:
        found = self.peek()
        if not found or found not in characters:
            raise json.JSONDecodeError(f"Expecting {what}", self.buffer, self.pos)
        self.pos += 1
        return found


def iter_json_array(path: str | Path, chunk_size: int = 1 << 20) -> Iterator[object]:
    """Yield the items of the JSON array in `path` in order. Raises NotAJsonArray when the top-level value is not an
    array and json.JSONDecodeError when the file is not valid JSON (after the items before the fault)."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as handle:
        reader = _Reader(handle, chunk_size)
        if reader.peek() != "[":
            raise NotAJsonArray(f"{path}: the top-level JSON value is not an array")
        reader.pos += 1
        if reader.peek() != "]":
            while True:
                yield reader.decode(decoder)
                if reader.expect(",]", "',' or ']'") == "]":
                    break
        else:
            reader.pos += 1
        if reader.peek():
            raise json.JSONDecodeError("Extra data", reader.buffer, reader.pos)
