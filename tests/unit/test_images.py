"""Images: conversion to RGB (modes, 16-bit, EXIF orientation), truncated files, side by side, finding image files."""

from __future__ import annotations

import pytest
from PIL import Image

from vcritic.base.images import UnreadableImageError, find_images, load_image, side_by_side, to_rgb
from vcritic.errors import VcriticError


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    image.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((1, 1)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "1", "I", "F"])
def test_other_modes_become_rgb(mode):
    image = Image.new("RGB", (8, 6), (10, 120, 200)).convert(mode)
    assert to_rgb(image).mode == "RGB"
    assert to_rgb(image).size == (8, 6)


def test_16_bit_greyscale_uses_its_full_range(tmp_path):
    image = Image.new("I;16", (2, 1))
    image.putpixel((0, 0), 1000)
    image.putpixel((1, 0), 60000)
    path = tmp_path / "deep.png"
    image.save(path)
    rgb = load_image(path)
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((1, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_truncated_file_fails_at_load(tmp_path):
    path = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(UnreadableImageError, match="truncated or corrupt image"):
        load_image(path)


def test_side_by_side_keeps_order_and_height():
    left, right = Image.new("RGB", (10, 20), (255, 0, 0)), Image.new("RGB", (40, 10), (0, 0, 255))
    canvas = side_by_side(left, right, height=100)
    assert canvas.height == 100
    assert canvas.getpixel((2, 50)) == (255, 0, 0) and canvas.getpixel((canvas.width - 2, 50)) == (0, 0, 255)


def test_find_images_walks_folders_skips_hidden_and_keeps_explicit_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ["a/1.jpg", "a/b/2.PNG", "a/notes.txt", ".hidden/3.jpg", "a/.4.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    explicit = tmp_path / "a" / "notes.txt"
    assert find_images([tmp_path]) == [tmp_path / "a" / "1.jpg", tmp_path / "a" / "b" / "2.PNG"]
    assert find_images([explicit, tmp_path / "a" / "1.jpg", explicit]) == [explicit, tmp_path / "a" / "1.jpg"]
    assert find_images([str(tmp_path / "**" / "*.jpg")]) == [tmp_path / "a" / "1.jpg"]


def test_find_images_names_missing_inputs(tmp_path):
    with pytest.raises(VcriticError, match="no such file or folder"):
        find_images([tmp_path / "missing"])
    with pytest.raises(VcriticError, match="no files match"):
        find_images([str(tmp_path / "*.jpg")])
