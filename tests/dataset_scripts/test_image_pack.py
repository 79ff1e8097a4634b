"""The image pack: entries found again after a restart, torn tails cut, wrong references refused."""

import hashlib
import threading

import pytest

from dataset_scripts.image_pack import HEADER, ImagePack, PackError, read_packed


def opened(path) -> ImagePack:
    pack = ImagePack(path)
    pack.open()
    return pack


def test_entries_are_found_again_after_a_restart_and_not_stored_twice(tmp_path):
    path = tmp_path / "images.pack"
    pack = opened(path)
    first = pack.add_many([b"alpha", b"beta", b"alpha"])
    pack.close()
    assert first[0] == first[2] == (HEADER.size, 5)
    size = path.stat().st_size
    pack = opened(path)
    again = pack.add_many([b"beta", b"gamma"])
    pack.close()
    assert again[0] == first[1]  # found by its digest in the headers, not appended again
    assert path.stat().st_size == size + HEADER.size + 5
    assert [read_packed(path, *where) for where in [*first, again[1]]] == [b"alpha", b"beta", b"alpha", b"gamma"]


@pytest.mark.parametrize("torn", [b"\x00" * 17, HEADER.pack(hashlib.sha256(b"delta").digest(), 5) + b"del"])
def test_a_torn_last_entry_is_cut_at_the_next_open(tmp_path, torn):
    path = tmp_path / "images.pack"
    pack = opened(path)
    pack.add_many([b"alpha"])
    pack.close()
    whole = path.stat().st_size
    with path.open("ab") as handle:  # what a kill -9 in the middle of a write leaves
        handle.write(torn)
    pack = opened(path)
    assert path.stat().st_size == whole
    ((offset, length),) = pack.add_many([b"delta"])
    pack.close()
    assert offset == whole + HEADER.size and read_packed(path, offset, length) == b"delta"


def test_a_wrong_or_cut_reference_is_an_error_not_garbage(tmp_path):
    path = tmp_path / "images.pack"
    pack = opened(path)
    (offset, length), _ = pack.add_many([b"alpha", b"beta"])
    pack.close()
    with pytest.raises(PackError, match="no image of 5 bytes starts at offset 41"):
        read_packed(path, offset + 1, length)
    with pytest.raises(PackError, match="no image of 4 bytes"):
        read_packed(path, offset, 4)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 2)
    with pytest.raises(PackError, match="cut short"):
        read_packed(path, offset + length + HEADER.size, 4)


def test_writers_in_several_threads_each_get_their_own_bytes_back(tmp_path):
    path = tmp_path / "images.pack"
    pack = opened(path)
    found: dict[bytes, tuple[int, int]] = {}

    def write(thread: int) -> None:
        images = [f"image {n % 7} of {thread % 2}".encode() for n in range(20)]
        for data, where in zip(images, pack.add_many(images)):
            found[data] = where

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pack.close()
    assert len(found) == 14 and all(read_packed(path, *where) == data for data, where in found.items())
    assert path.stat().st_size == sum(HEADER.size + len(data) for data in found)  # each distinct image once
