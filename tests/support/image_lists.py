"""Lists of image files for the pipeline tests: real images of growing sizes, with unreadable files among them."""

from __future__ import annotations

from pathlib import Path


def image_paths(folder: Path, sample_images, n: int, broken_at=()) -> list[str]:
    """``n`` real PNGs of different sizes in ``folder`` (``img00.png``...), as path strings in order, with
    ``broken.jpg`` (not an image) inserted at each index of ``broken_at`` in turn."""
    paths = []
    sources = list(sample_images.values())
    for i in range(n):
        path = folder / f"img{i:02d}.png"
        sources[i % len(sources)].resize((30 + 9 * i, 40 + 3 * i)).save(path)
        paths.append(str(path))
    (folder / "broken.jpg").write_bytes(b"not an image")
    for position in broken_at:
        paths.insert(position, str(folder / "broken.jpg"))
    return paths
