"""``vcritic demo [DIR]``: a tiny random checkpoint and a few sample images, so every command can be tried offline.

The model is ``vcritic.testing``'s tiny LLaVA (random weights: its scores mean nothing, but every code path is the
real one). Pictures come from scikit-image when it is installed, else they are drawn here with numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcritic.errors import VcriticError

EPILOG = (
    "Nothing is downloaded. DIR/model is a tiny random LLaVA (under 1 MB; its scores are noise, the commands are "
    "the real ones) and DIR/images a few pictures with blurred, noisy and JPEG-damaged copies. The commands to try "
    "next are printed on stdout."
)
# Largest side of a sample picture: small files keep the demo quick on any CPU.
SIDE = 256


def demo(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to create (model/ and images/ go inside).")
    ] = Path("vcritic-demo"),
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the model/ and images/ of an earlier vcritic demo in DIR.")
    ] = False,
) -> None:
    """Build a tiny random model and sample images in DIR to try vcritic offline in two minutes."""
    import shutil

    from vcritic.cli._output import stderr

    model_dir, image_dir = directory / "model", directory / "images"
    existing = [p for p in (model_dir, image_dir) if p.exists()]
    if existing and not overwrite:
        raise VcriticError(
            f"{existing[0]} already exists", hint="pass --overwrite to replace it, or name another folder"
        )
    for path in existing:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    with stderr.status("Building a tiny random model ..."):
        from transformers.utils import logging

        from vcritic.testing import build_tiny

        logging.disable_progress_bar()  # save_pretrained's one-shard bar says nothing here
        build_tiny("llava", model_dir)
    names = write_images(image_dir)
    stderr.print(f"Wrote a tiny random model to {model_dir} and {len(names)} images to {image_dir}", highlight=False)
    first, damaged = image_dir / names[0], image_dir / names[1]
    typer.echo(
        "Try (a random model: the numbers mean nothing, every step is real):\n"
        f"  vcritic score {image_dir} -m {model_dir} -o {directory / 'scores.csv'}\n"
        f"  vcritic compare {first} {damaged} -m {model_dir}\n"
        f"  vcritic rank {image_dir} -m {model_dir} -o {directory / 'ranking.csv'}\n"
        f"  vcritic describe {first} -m {model_dir} --max-new-tokens 16\n"
        f"  vcritic report {directory / 'scores.csv'} -o {directory / 'report.html'}"
    )


def write_images(folder: Path) -> list[str]:
    """Save the sample pictures and damaged copies of the first one into ``folder``; return the file names, the
    pristine first picture first and its blurred copy second."""
    from PIL import ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    pictures = _pictures()
    first_name, first = pictures[0]
    versions = [
        (f"{first_name}.png", first),
        (f"{first_name}-blurred.png", first.filter(ImageFilter.GaussianBlur(3))),
        (f"{first_name}-noisy.png", _noisy(first)),
    ]
    names = []
    for name, image in versions + [(f"{name}.png", image) for name, image in pictures[1:]]:
        image.save(folder / name)
        names.append(name)
    first.save(folder / f"{first_name}-jpeg.jpg", quality=8)
    names.append(f"{first_name}-jpeg.jpg")
    return names


def _pictures():
    """(name, RGB image) pairs: scikit-image's bundled photos if it is installed, else drawn ones."""
    from PIL import Image

    try:
        from skimage import data
    except ImportError:
        return _drawn()
    pictures = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        image.thumbnail((SIDE, SIDE))
        pictures.append((name, image))
    return pictures


def _drawn():
    """Four pictures drawn with numpy: colour gradients with shapes and texture, so the damaged copies differ."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    pictures = []
    for k, name in enumerate(("sunset", "meadow", "tiles", "sky")):
        base = np.stack([x * (k + 1) % 1, y, (x + y) / 2], axis=-1) * 255
        texture = rng.normal(0, 6, (SIDE, SIDE, 1))
        image = Image.fromarray(np.clip(base + texture, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x0, y0 = rng.integers(0, SIDE - 40, 2)
            size = int(rng.integers(20, 80))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse([int(x0), int(y0), int(x0) + size, int(y0) + size], fill=colour)
        pictures.append((name, image))
    return pictures


def _noisy(image):
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(1).normal(0, 40, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
