"""Hostile inputs end to end: a corpus of every bad file, scored by the real CLI in one run on a tiny model."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` (a decompression bomb by its header alone)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.fixture
def hostile_folder(tmp_path, sample_images):
    """Good images in every awkward mode and name, and every kind of bad file, in one folder."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    good = {
        "plain.jpg": sample_images["chelsea"],
        "shot[x].png": sample_images["astronaut"],
        "comma, name.png": sample_images["coffee"],
        "ünïcødé 写真.png": sample_images["rocket"],
        "rgba.png": sample_images["logo"],
        "cmyk.jpg": sample_images["chelsea"].convert("CMYK"),
        "grey16.png": Image.fromarray(__import__("numpy").asarray(sample_images["camera"]).astype("uint16") * 257),
        "palette.gif": sample_images["coffee"].convert("P"),
        "tiny.webp": sample_images["chelsea"].resize((8, 8)),
    }
    for name, image in good.items():
        image.save(folder / name)
    png = (folder / "plain.jpg").read_bytes()
    bad = {
        "empty.jpg": b"",
        "truncated.jpg": png[: len(png) // 3],
        "random.png": os.urandom(2048),
        "text.png": b"this is not an image\n",
        "bomb.png": _png_claiming(60000, 60000),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    os.mkfifo(folder / "fifo.jpg")
    (folder / "loop1.jpg").symlink_to(folder / "loop2.jpg")
    (folder / "loop2.jpg").symlink_to(folder / "loop1.jpg")
    (folder / "dangling.png").symlink_to(folder / "gone.png")
    (folder / "notes.txt").write_text("not an image type: listed as skipped")
    return folder, set(good), set(bad) | {"fifo.jpg", "loop1.jpg", "loop2.jpg", "dangling.png"}


@pytest.mark.slow
def test_every_bad_input_is_accounted_for_in_one_run(hostile_folder, tiny_llava, tmp_path):
    from support.processes import read_rows, run_vcritic

    folder, good, bad = hostile_folder
    out = tmp_path / "scores.csv"
    result = run_vcritic(["score", folder, "-m", tiny_llava, "-o", out, "-b", "4", "--workers", "2"], timeout=180)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_bytes().count(b"\r") == 0  # one line ending, \n
    rows = {Path(row["path"]).name: row for row in read_rows(out)}
    assert set(rows) == good | bad  # every input has exactly one row
    assert all(rows[name]["mos"] and not rows[name]["error"] for name in good)
    errors = {name: rows[name]["error"] for name in bad}
    assert all(errors.values()) and not any(rows[name]["mos"] for name in bad)
    assert errors["fifo.jpg"] == "not a regular file (a FIFO)"
    assert errors["loop1.jpg"] == "symbolic link loop"
    assert errors["dangling.png"] == "file not found"
    assert errors["bomb.png"].startswith("image too large to decode safely")
    assert errors["text.png"] == "not an image, or a format Pillow cannot read"
    assert "Not scored: 1 file(s) in the folders are not of an image type Pillow opens" in result.stderr
    assert "shot[x].png" in out.read_text()  # names verbatim
