"""Small JPEG thumbnails as data URIs, so the report is one file; a file that cannot be read gets a reason instead."""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from pathlib import Path

THUMBNAIL_SIZE = 160  # px, the longer side
MAX_IMAGES = 50  # best and worst images shown by default, each as a thumbnail
JPEG_QUALITY = 75


@dataclass
class Thumbnail:
    """A data URI, or (``uri`` None) why there is none."""

    uri: str | None
    error: str | None = None


def resolve_image(text: str, csv_folder: Path) -> Path:
    """The file a path cell names. vcritic writes paths as they were given, relative to the folder it ran in, so a
    relative path is tried from the current folder first, then from the CSV's own folder (schema.resolve_relative's
    rule); an absolute one is taken as it is. A name that is not UTF-8, written with ``\\xNN`` escapes
    (:mod:`vcritic.base.csvio`), is also tried as the name on disk it stands for."""
    from vcritic.base.csvio import cell_name
    from vcritic.readout.schema import resolve_relative

    for spelling in dict.fromkeys([text, cell_name(text) or text]):
        given = Path(spelling).expanduser()
        if given.exists():
            return given
        if not given.is_absolute():
            beside = Path(resolve_relative(spelling, csv_folder))
            if beside.exists():
                return beside
    return Path(text).expanduser()


def make_thumbnail(path: str | os.PathLike, size: int = THUMBNAIL_SIZE) -> Thumbnail:
    """The image at ``path`` shrunk to fit ``size`` x ``size`` (orientation applied, RGB), as a JPEG data URI."""
    from PIL import Image

    from vcritic.base.images import describe_image_error, open_regular, to_rgb

    try:
        with open_regular(path) as handle, Image.open(handle) as image:
            image.draft("RGB", (size, size))  # JPEG decodes at 1/2 .. 1/8 scale: large photos stay fast
            picture = to_rgb(image)
            picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    except Exception as err:  # decoders raise many types; the reason goes in the page, the report goes on
        return Thumbnail(None, describe_image_error(err))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return Thumbnail("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
