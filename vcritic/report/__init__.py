"""``vcritic report``: one self-contained HTML page from what vcritic wrote, no model needed.

- :mod:`vcritic.report.inputs` recognises and reads a scores CSV, a ranking CSV or a bench ``--out`` folder;
- :mod:`vcritic.report.thumbnails` makes the embedded JPEG thumbnails;
- :mod:`vcritic.report.svg` draws the histogram and scatter plots;
- :mod:`vcritic.report.page` puts the page together.
"""

from __future__ import annotations

from pathlib import Path

# The CLI reads these defaults at import; thumbnails loads Pillow only when it makes a thumbnail, so `vcritic --help`
# stays light.
from vcritic.report.thumbnails import MAX_IMAGES, THUMBNAIL_SIZE


def build_report(source: str | Path, *, max_images: int = MAX_IMAGES, thumbnail_size: int = THUMBNAIL_SIZE) -> str:
    """The HTML page for ``source`` (a scores CSV, a ranking CSV or a bench --out folder); at most ``max_images``
    best and ``max_images`` worst images are shown. Raises VcriticError for anything else."""
    from vcritic.report.inputs import load
    from vcritic.report.page import render

    return render(load(Path(source)), max_images=max_images, thumbnail_size=thumbnail_size)


__all__ = ["MAX_IMAGES", "THUMBNAIL_SIZE", "build_report"]
