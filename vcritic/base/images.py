"""Finding image files and opening them safely as 8-bit RGB.

Every image the model sees goes through :func:`load_image`: EXIF orientation applied (phones store portraits
sideways), transparency flattened onto white (RGBA inputs crash several peers), palette, CMYK, greyscale and
16-bit images converted to 8-bit RGB.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageOps

from vcritic.errors import VcriticError

# Pillow formats that only identify a file and need an external handler (Ghostscript, a GRIB library) to decode it.
_NOT_IMAGES = frozenset({"BUFR", "EPS", "GRIB", "HDF5", "MPEG", "PDF", "WMF"})


@functools.cache
def image_extensions() -> frozenset[str]:
    """File extensions a folder scan picks up: every format this Pillow can open, plugins included (HEIC/HEIF
    when pillow-heif is installed; AVIF where Pillow was built with it)."""
    with contextlib.suppress(ImportError):
        from pillow_heif import register_heif_opener  # optional plugin: registers HEIC/HEIF with Pillow

        register_heif_opener()
    Image.init()
    return frozenset(
        ext.lower()
        for ext, fmt in Image.registered_extensions().items()
        if fmt in Image.OPEN and fmt not in _NOT_IMAGES
    )


def find_images(
    inputs: Iterable[str | os.PathLike],
    skipped: list[Path] | None = None,
    unsearched: list[tuple[Path, str]] | None = None,
) -> list[Path]:
    """Expand files, folders (recursively, image extensions only, hidden entries skipped) and glob patterns.

    Files named explicitly are kept whatever their extension, so a bad one is reported instead of silently
    dropped. Folders are listed in sorted order; the result keeps the order of ``inputs`` and has no duplicates.
    Files in folders that are not of a type Pillow opens are appended to ``skipped`` when it is given, and folders
    the walk did not search (linked folders, which it does not follow; folders it cannot list) to ``unsearched``
    as (folder, reason).
    """
    found: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found.extend(_walk_images(path, skipped, unsearched))
        elif path.exists():
            found.append(path)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise VcriticError(f"no files match {text!r}", hint="check the pattern (quote it for the shell)")
            for match in map(Path, matches):
                found.extend(_walk_images(match, skipped, unsearched) if match.is_dir() else [match])
        else:
            raise VcriticError(f"no such file or folder: {text}", hint="check the path")
    unique = list(dict.fromkeys(found))
    return unique


def require_images(
    inputs: Iterable[str | os.PathLike],
    skipped: list[Path] | None = None,
    unsearched: list[tuple[Path, str]] | None = None,
) -> list[Path]:
    """:func:`find_images`, refusing an empty result with a message that says what else the folders held."""
    skipped = [] if skipped is None else skipped
    paths = find_images(inputs, skipped, unsearched)
    if not paths:
        raise VcriticError(
            "no images found in the given inputs"
            + (f" ({len(skipped)} file(s) of other types, e.g. {skipped[0].name})" if skipped else ""),
            hint="folders are searched for every file type Pillow can open",
        )
    # Loading a model takes up to a minute: when not one input can be an image (``score notes.txt``), say so first.
    # Stops at the first file that opens, so a folder of good images costs one header read.
    reasons = []
    for path in paths:
        reason = probe_image(path)
        if reason is None:
            return paths
        reasons.append((path, reason))
    first, why = reasons[0]
    more = f" (and {len(reasons) - 1} other input(s) that cannot be read either)" if len(reasons) > 1 else ""
    raise VcriticError(f"{first}: {why}{more}", hint="give image files (JPEG, PNG, WebP, ...) or folders of them")


def probe_image(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be an image, from its header alone (a regular file Pillow identifies), or None. Cheap:
    nothing is decoded, so a file that passes may still fail to load."""
    try:
        with open_regular(path) as handle, Image.open(handle) as image:
            if image.format in _NOT_IMAGES:
                return f"a {image.format} file, not an image vcritic reads"
    except Exception as err:  # as load_image: decoders raise many types
        return describe_image_error(err)
    return None


def _walk_images(
    root: Path, skipped: list[Path] | None, unsearched: list[tuple[Path, str]] | None = None
) -> list[Path]:
    files = []
    extensions = image_extensions()
    not_listed = [] if unsearched is None else unsearched

    def cannot_list(err: OSError) -> None:
        not_listed.append((Path(err.filename or root), f"cannot list it: {err.strerror or err}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=cannot_list):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames:  # os.walk lists a linked folder but does not go in (no loops, no escapes)
            if os.path.islink(os.path.join(dirpath, name)):
                not_listed.append((Path(dirpath) / name, "a linked folder (not followed)"))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in extensions:
                files.append(Path(dirpath) / name)
            elif skipped is not None:
                skipped.append(Path(dirpath) / name)
    return files


def unsearched_note(unsearched: list[tuple[Path, str]]) -> str | None:
    """The summary line for folders a walk did not search; None when there are none."""
    if not unsearched:
        return None
    folder, why = unsearched[0]
    return f"Not searched: {len(unsearched)} folder(s) (e.g. {folder}: {why})"


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


def open_regular(path: str | os.PathLike):
    """``path`` opened for reading in binary, refusing anything but a regular file.

    A FIFO named ``x.jpg`` would block a plain ``open`` forever and a device would never end, so the file is opened
    non-blocking and checked with ``fstat`` on the open descriptor (no window for a swap between check and open).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise NotARegularFileError(f"not a regular file ({_file_kind(mode)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class NotARegularFileError(OSError):
    """A FIFO, socket or device where an image file was expected."""


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):  # fmt: skip
        if test(mode):
            return name
    return "a special file"


class UnreadableImageError(VcriticError):
    """An input that cannot be used as an image; the message says why, without the path."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open ``path`` fully (so a truncated file fails here, not later) and return it as RGB. Only regular files are
    opened (see :func:`open_regular`). Whatever is wrong with the file raises :class:`UnreadableImageError`."""
    try:
        with open_regular(path) as handle, Image.open(handle) as image:
            image.load()
            return to_rgb(image)
    except Exception as err:  # decoders raise many types (OSError, ValueError, SyntaxError, struct.error, ...)
        raise UnreadableImageError(describe_image_error(err)) from err


def load_image_bytes(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """An image sent as bytes (``vcritic serve``), opened as :func:`load_image` opens a file. ``max_pixels``: a
    larger image is refused from its header, before anything is decoded (the decompression-bomb rule, with the
    caller's limit). Whatever is wrong raises :class:`UnreadableImageError`."""
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise UnreadableImageError(
                    f"image of {width}x{height} = {width * height} pixels is over the limit of {max_pixels} pixels"
                )
            image.load()
            return to_rgb(image)
    except UnreadableImageError:
        raise
    except Exception as err:  # decoders raise many types (OSError, ValueError, SyntaxError, struct.error, ...)
        raise UnreadableImageError(describe_image_error(err)) from err


def describe_image_error(err: BaseException) -> str:
    """A short, path-free reason why an image could not be used."""
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
    if isinstance(err, Image.DecompressionBombError):
        return "image too large to decode safely (Pillow's decompression-bomb limit)"
    if isinstance(err, OSError) and err.errno == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, IsADirectoryError):
        return "is a directory"
    if isinstance(err, VcriticError):
        return err.message
    if isinstance(err, NotARegularFileError):
        return str(err)
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, OSError) and "truncated" in message:
        return f"truncated or corrupt image ({message})"
    return f"{type(err).__name__}: {message}"


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
