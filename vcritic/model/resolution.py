"""How large the model sees each image: ``--max-pixels`` and ``--image-size``, applied to the processor in one place.

Families differ in what they can change:

- Qwen2-VL/2.5-VL resize every image to a pixel budget (sides multiples of 28 = 14 px patches x 2x2 merge, area
  between the image processor's ``shortest_edge`` and ``longest_edge``, i.e. min/max pixels); one visual token per
  28x28 px. ``max_pixels`` lowers (or raises) that budget; ``image_size`` S resizes every image to S x S first (S a
  multiple of 28), the paper's fixed square input.
- CLIP/EVA/BLIP towers (LLaVA, BLIP-2, InstructBLIP) take one fixed size, the one their position embeddings were
  trained at; only that size is accepted, and ``max_pixels`` is refused.
- Anything else is refused with a clear error rather than silently ignored.

:func:`configure_resolution` is called by :func:`vcritic.inference.loading.load_model`, so scoring and training share
it; the
fixed square size travels on the processor (``vcritic_image_size``) so the picklable
:class:`~vcritic.inference.critic.Encoder`
(and its DataLoader workers) applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vcritic.errors import VcriticError
from vcritic.model.vcritic_json import RESOLUTION, manifest_resolution

if TYPE_CHECKING:
    from PIL import Image

FIXED_SIZE_ATTRIBUTE = "vcritic_image_size"
# The sane range, one rule for every command, the Python API, vcritic.json and the training config. The top is the
# largest input any supported family takes: Qwen2-VL/2.5-VL's own pixel budget (16384 visual tokens of 28x28 px);
# the fixed-size towers take 224-448. Beyond it an image costs memory and time (--image-size 100000 would be 12.7
# million visual tokens) and no model has seen such inputs.
MAX_PIXELS = 12_845_056
MAX_IMAGE_SIZE = 3584  # the square side that fills MAX_PIXELS
RANGES = {"max_pixels": (1, MAX_PIXELS), "image_size": (1, MAX_IMAGE_SIZE)}


def out_of_range(max_pixels: int | None, image_size: int | None) -> tuple[str, int, int, int] | None:
    """(name, value, lowest, highest) of the first value outside :data:`RANGES`; None when both are fine."""
    for name, value in (("max_pixels", max_pixels), ("image_size", image_size)):
        low, high = RANGES[name]
        if value is not None and not low <= value <= high:
            return name, value, low, high
    return None


def check_range(max_pixels: int | None = None, image_size: int | None = None) -> None:
    """Refuse ``max_pixels`` / ``image_size`` outside the sane range, naming it."""
    found = out_of_range(max_pixels, image_size)
    if found is not None:
        name, value, low, high = found
        raise VcriticError(
            f"--{name.replace('_', '-')} {value} is out of range: use {low} to {high}",
            hint="448 or 224 is the paper's --image-size; Qwen2-VL/2.5-VL see at most "
            f"{MAX_PIXELS} pixels ({MAX_IMAGE_SIZE}x{MAX_IMAGE_SIZE})",
        )


@dataclass(frozen=True)
class Resolution:
    """How large images are seen, and where that came from: ``flags`` (given by the caller), ``vcritic.json``
    (what the trained model was trained at) or ``default`` (the checkpoint's own resizing)."""

    max_pixels: int | None = None
    image_size: int | None = None
    source: str = "default"

    def as_manifest(self) -> dict[str, int | None]:
        """The pair as ``vcritic.json`` records it."""
        return {"max_pixels": self.max_pixels, "image_size": self.image_size}

    def __str__(self) -> str:
        parts = [f"--{name.replace('_', '-')} {value}" for name, value in self.as_manifest().items() if value]
        if not parts:
            return "the checkpoint's default resolution"
        return " ".join(parts) + (" (from vcritic.json)" if self.source == "vcritic.json" else "")


def chosen_resolution(max_pixels: int | None, image_size: int | None, manifest: dict[str, Any] | None) -> Resolution:
    """The caller's ``max_pixels``/``image_size`` when either is given (both replace the recorded pair), else what
    a trained directory's ``vcritic.json`` recorded, else the checkpoint's default. Manifests written before the
    key existed have none: the checkpoint's default."""
    if max_pixels is not None or image_size is not None:
        check_range(max_pixels, image_size)
        return Resolution(max_pixels, image_size, "flags")
    recorded = manifest_resolution(manifest)
    if recorded is None:
        return Resolution()

    def valid(value) -> bool:
        return value is None or (type(value) is int and value > 0)

    if not isinstance(recorded, dict) or set(recorded) - {"max_pixels", "image_size"}:
        valid_pair = False
    else:
        valid_pair = all(valid(v) for v in recorded.values())
        valid_pair = valid_pair and out_of_range(recorded.get("max_pixels"), recorded.get("image_size")) is None
    if not valid_pair:
        raise VcriticError(
            f"vcritic.json: {RESOLUTION!r} must hold max_pixels (1 to {MAX_PIXELS}) and image_size (1 to "
            f"{MAX_IMAGE_SIZE}), whole numbers or null, not {recorded!r}",
            hint="fix the file, or remove the key to use the checkpoint's default resolution",
        )
    values = recorded
    max_pixels, image_size = values.get("max_pixels"), values.get("image_size")
    if max_pixels is None and image_size is None:
        return Resolution()
    return Resolution(max_pixels, image_size, "vcritic.json")


def _pixel_budget_factor(image_processor) -> int | None:
    """Patch x merge size of a pixel-budget (Qwen2-VL style) image processor, else None."""
    size = getattr(image_processor, "size", None)
    patch, merge = getattr(image_processor, "patch_size", None), getattr(image_processor, "merge_size", None)
    if size is None or not patch or not merge or getattr(size, "longest_edge", None) is None:
        return None
    return int(patch) * int(merge)


def native_size(image_processor) -> int | None:
    """The one square side a fixed-size processor feeds the model (crop size, else resize size), if it has one."""
    for name in ("crop_size", "size"):
        size = getattr(image_processor, name, None)
        height, width = getattr(size, "height", None), getattr(size, "width", None)
        cropped = name == "size" or getattr(image_processor, "do_center_crop", True)
        if height and width and height == width and cropped:
            return int(height)
    return None


def configure_resolution(processor, *, max_pixels: int | None = None, image_size: int | None = None) -> None:
    """Set the processor so every image is seen at ``max_pixels`` / ``image_size``; refuse what the family cannot do.

    Left at None, the checkpoint's own settings stay (token counts: docs/guides/scoring.md, "Resolution").
    """
    if max_pixels is None and image_size is None:
        return
    image_processor = getattr(processor, "image_processor", None)
    kind = type(image_processor).__name__
    factor = _pixel_budget_factor(image_processor)
    if factor is not None:
        size = image_processor.size
        low = int(size.shortest_edge or factor * factor)
        if image_size is not None:
            if image_size % factor or image_size < factor:
                raise VcriticError(
                    f"--image-size {image_size} is not a multiple of {factor} ({kind} uses {factor} px tiles)",
                    hint=f"use e.g. {max(factor, round(image_size / factor) * factor)} (224 and 448 both work)",
                )
            area = image_size * image_size
            low, high = min(low, area), max(area, max_pixels or area)
            setattr(processor, FIXED_SIZE_ATTRIBUTE, image_size)
        else:
            high = max_pixels
        if high < low:
            raise VcriticError(
                f"--max-pixels {max_pixels} is below this processor's minimum of {low} pixels",
                hint=f"use at least {low} ({factor}x{factor} px make one visual token)",
            )
        _set_size(image_processor, low, high)
        return
    native = native_size(image_processor)
    if native is None:
        raise VcriticError(
            f"this model's image processor ({kind}) has no resolution setting vcritic can change",
            hint="leave out --max-pixels and --image-size for this model",
        )
    if max_pixels is not None:
        raise VcriticError(
            f"--max-pixels does not apply: {kind} resizes every image to {native}x{native}",
            hint=f"leave it out (or use --image-size {native}); pixel budgets are for Qwen2-VL/2.5-VL",
        )
    if image_size != native:
        raise VcriticError(
            f"--image-size {image_size} does not fit this model: its vision tower takes {native}x{native} images",
            hint=f"use --image-size {native} or leave it out",
        )


def _set_size(image_processor, low: int, high: int) -> None:
    from transformers.image_utils import SizeDict

    image_processor.size = SizeDict(shortest_edge=low, longest_edge=high)


def fixed_size(processor) -> int | None:
    return getattr(processor, FIXED_SIZE_ATTRIBUTE, None)


def fit_image(processor, image: Image.Image) -> Image.Image:
    """``image`` resized to the processor's fixed square size where one was configured; unchanged otherwise."""
    side = fixed_size(processor)
    if side is None or image.size == (side, side):
        return image
    from PIL import Image

    return image.resize((side, side), Image.Resampling.BICUBIC)


def visual_tokens(processor, width: int, height: int) -> int | None:
    """Visual tokens the language model reads for one ``width`` x ``height`` image (None if unknown)."""
    image_processor = getattr(processor, "image_processor", None)
    factor = _pixel_budget_factor(image_processor)
    if factor is None:
        return None
    side = fixed_size(processor)
    if side is not None:
        width = height = side
    patches = image_processor.get_number_of_image_patches(height, width, {})
    return patches // (int(image_processor.merge_size) ** 2)
