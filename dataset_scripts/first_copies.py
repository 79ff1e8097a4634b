"""Never pay twice for one picture: an input whose image nearly duplicates one already paid for (or about to be) is
skipped as `near_duplicate`, naming the first copy, before any request is sent for it.

Near-duplicate is build_dataset's rule (dataset_scripts/near_duplicates.py: a 256-bit dHash within `distance` bits
and the same colours), applied to the image as it would be sent. Only inputs with the same instruction are compared
(vflan asks different questions about one picture: each is its own purchase), and an identical file is left to the
`duplicate` rule (same record key), so this reason is only ever about a *different* file of the same picture.

Decisions are made in input order, whatever order the images finish reading in: an input waits for the decisions of
the inputs before it (each is read concurrently; the wait is only for their reads). The index starts from what the
output folder already holds: the signature every record and reject carries (`image_signature`), in any shard file,
for the run's recipe. So a rerun makes the same decisions (an input finished earlier is a first copy from the start;
the rest are decided again in the same order), and across shards of one folder a picture is skipped when its first
copy was recorded by any shard before this shard's run started. Shards running at the same time do not see each
other's new images: each pays for at most one copy of a picture.

What a skip saves is estimated as the budget reserves a request (CostMeter.estimate: estimated prompt tokens plus the
max completion tokens, at the run's price), once per template of the strategy; two-call's second request is counted
with an empty caption. Each skip row carries its estimate; summaries and build_dataset's stats sum them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Awaitable, Callable, Container, Iterable
from dataclasses import dataclass

from dataset_scripts.images import PreparedImage
from dataset_scripts.inputs import Item
from dataset_scripts.limits import CostMeter
from dataset_scripts.near_duplicates import NearDuplicateIndex, Signature, signature
from dataset_scripts.tasks import TaskSpec
from toolkit.cost import NO_PRICE


NEAR_DUPLICATE = "near_duplicate"


def signature_text(sig: Signature) -> str:
    """A signature as stored in a record or reject row: the hash and the colours, in hex."""
    return f"{sig.hash:064x}/{sig.colour.hex()}"


def parse_signature(text: object) -> Signature | None:
    """`signature_text` read back; None for rows without one (or written by other tools)."""
    try:
        hash_hex, colour_hex = str(text).split("/")
        return Signature(int(hash_hex, 16), bytes.fromhex(colour_hex))
    except ValueError:
        return None


@dataclass
class Saving:
    """Inputs skipped as near-duplicates and the requests and dollars (estimated) not spent on them."""

    inputs: int = 0
    requests: int = 0
    cost_usd: float = 0.0

    def add(self, saved: dict | None) -> None:
        """Count one `near_duplicate` skip by its row's `saved` entry."""
        saved = saved or {}
        self.inputs += 1
        self.requests += saved.get("requests", 0)
        self.cost_usd += saved.get("cost_usd") or 0.0

    def report(self, priced: bool) -> dict:
        """The summary's entry; without a price the dollars read "no price configured"."""
        cost = round(self.cost_usd, 6) if priced else None
        return {"inputs": self.inputs, "requests": self.requests, "cost_usd": cost, "cost": _cost_text(cost)}


def _cost_text(cost: float | None) -> str:
    return NO_PRICE if cost is None else f"${cost:.4f}"


def left_out_skips(
    rows: Iterable[dict], finished: Container[str], rejected: Container[str]
) -> tuple[Counter[str], Saving]:
    """(skips by reason, near-duplicate saving) from each input's last skip row, leaving out the inputs finished or
    rejected since. Only the reason and saving of each input are held: a run at scale skips hundreds of thousands
    (321,083 of 500,000 inputs in the 10^6-row bench, whose whole rows took ~1 KB each)."""
    last: dict[str, tuple[str, dict | None]] = {}
    for row in rows:
        last[row["item_id"]] = (row["reason"], row.get("saved"))
    counts: Counter[str] = Counter()
    saving = Saving()
    for item, (reason, saved) in last.items():
        if item in finished or item in rejected:
            continue
        counts[reason] += 1
        if reason == NEAR_DUPLICATE:
            saving.add(saved)
    return counts, saving


def estimated_saving(spec: TaskSpec, meter: CostMeter, item: Item, image: PreparedImage) -> dict:
    """What the requests of one skipped input would have reserved (see the module notes)."""
    max_tokens = int(spec.sampling.get("max_tokens") or 0)
    cost = 0.0
    for template in spec.templates:
        messages = spec.messages(template, image, item.question, "")
        cost += meter.estimate(spec.estimate_prompt_tokens(messages, image), max_tokens)
    return {"requests": len(spec.templates), "cost_usd": round(cost, 8) if meter.price else None}


class FirstCopies:
    """The near-duplicate decisions of one run, made in input order (see the module notes)."""

    def __init__(self, spec: TaskSpec, distance: int | None) -> None:
        self.spec = spec
        self.distance = distance if spec.mode != "text" else None  # None: off, every image goes
        self.indexes: dict[str, NearDuplicateIndex] = {}  # per instruction
        self.keys: dict[str, str] = {}  # item id -> record key, of the images indexed
        self.origins: dict[str, str] = {}  # item id -> origin, of the images indexed
        self.reports: dict[int, tuple | None] = {}  # position -> what to decide, waiting for the earlier ones
        self.waiting: dict[int, asyncio.Future] = {}
        self.next = 0  # the first position not decided yet

    def signed(self, image: PreparedImage, where: str = "image") -> PreparedImage:
        """The image with the signature of its bytes as sent, when the run dedups; none if it cannot be decoded
        again (then it is never a near-duplicate)."""
        if self.distance is None:
            return image
        try:
            return dataclasses.replace(image, signature=signature_text(signature(image.data, where)))
        except (OSError, ValueError):
            return image

    def skip_fields(self, first: str, item: Item, image: PreparedImage, meter: CostMeter) -> dict:
        """The skip row's detail, the first copy's id and the estimated saving of a near-duplicate."""
        detail = f"nearly the same picture as {self.origins[first]} (input {first}); not sent"
        return {"detail": detail, "first_copy": first, "saved": estimated_saving(self.spec, meter, item, image)}

    def remember(self, row: dict) -> None:
        """An image finished by an earlier run: a record or reject row (of the run's recipe; others are ignored)."""
        sig = parse_signature(row.get("image_signature"))
        if row.get("fingerprint") != self.spec.fingerprint or sig is None or self.distance is None:
            return
        if row["item_id"] not in self.keys:  # a record after a reject of the same input: indexed once
            self._index(row.get("instruction")).add(sig, row["item_id"])
            self.keys[row["item_id"]], self.origins[row["item_id"]] = row["key"], row.get("origin", "")

    def _index(self, instruction: str | None) -> NearDuplicateIndex:
        instruction = instruction or ""
        if instruction not in self.indexes:
            self.indexes[instruction] = NearDuplicateIndex(self.distance)
        return self.indexes[instruction]

    def pass_turn(self, position: int) -> None:
        """The input at `position` is not decided here (finished before, unreadable): later ones need not wait."""
        self._report(position, None)

    async def first_copy(
        self, position: int, item: Item, read: Callable[[Item], Awaitable[PreparedImage]]
    ) -> tuple[PreparedImage, str | None]:
        """The input's image (`read(item)`: its errors pass through) and the id of the input it nearly duplicates, or
        None (then it is the first copy of its picture), decided after every input before `position`."""
        try:
            image = await read(item)
        except BaseException:
            self.pass_turn(position)
            raise
        sig = parse_signature(image.signature) if self.distance is not None else None
        if sig is None:
            self.pass_turn(position)
            return image, None
        future = asyncio.get_running_loop().create_future()
        self.waiting[position] = future
        self._report(position, (item, self.spec.key(image, item.question), sig))
        return image, await future

    def _report(self, position: int, entry: tuple | None) -> None:
        self.reports[position] = entry
        while self.next in self.reports:
            entry = self.reports.pop(self.next)
            future = self.waiting.pop(self.next, None)
            decision = self._decide(*entry) if entry is not None else None
            if future is not None and not future.done():
                future.set_result(decision)
            self.next += 1

    def _decide(self, item: Item, key: str, sig: Signature) -> str | None:
        index = self._index(item.question)
        first = index.match(sig)
        if first is None:
            index.add(sig, item.item_id)
            self.keys[item.item_id], self.origins[item.item_id] = key, item.origin
            return None
        if first == item.item_id or self.keys.get(first) == key:  # itself (a retried reject) or an identical file
            return None
        return first
