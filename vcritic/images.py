"""Finding image files and opening them safely as 8-bit RGB.

Every image the model sees goes through :func:`load_image`: EXIF orientation applied (phones store portraits
sideways), transparency flattened onto white (RGBA inputs crash several peers), palette, CMYK, greyscale and
16-bit images converted to 8-bit RGB.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageOps

from vcritic.errors import VcriticError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".jfif"}
)


def find_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (recursively, image extensions only, hidden entries skipped) and glob patterns.

    Files named explicitly are kept whatever their extension, so a bad one is reported instead of silently
    dropped. Folders are listed in sorted order; the result keeps the order of ``inputs`` and has no duplicates.
    """
    found: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found.extend(_walk_images(path))
        elif path.exists():
            found.append(path)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise VcriticError(f"no files match {text!r}", hint="check the pattern (quote it for the shell)")
            for match in map(Path, matches):
                found.extend(_walk_images(match) if match.is_dir() else [match])
        else:
            raise VcriticError(f"no such file or folder: {text}", hint="check the path")
    unique = list(dict.fromkeys(found))
    return unique


def _walk_images(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / name)
    return files


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB, transparency composited onto white, EXIF orientation applied."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and float greyscale: scale the actual range to 0-255 instead of clipping at 255.
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        image = Image.fromarray(((array - lo) * scale).round().astype("uint8"), mode="L")
        mode = "L"
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open ``path`` fully (so a truncated file fails here, not later) and return it as RGB."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)


def side_by_side(left: Image.Image, right: Image.Image, height: int = 448) -> Image.Image:
    """Two images at the same height next to each other, for families that take one image per prompt."""

    def fit(image: Image.Image) -> Image.Image:
        width = max(1, round(image.width * height / image.height))
        return image.resize((width, height), Image.Resampling.BICUBIC)

    a, b = fit(left), fit(right)
    gap = max(4, height // 32)
    canvas = Image.new("RGB", (a.width + gap + b.width, height), (255, 255, 255))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width + gap, 0))
    return canvas
