"""Pure functions: prompts, readout arithmetic, image conversion and discovery, device/dtype choice."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from vcritic.base.images import UnreadableImageError, find_images, load_image, side_by_side, to_rgb
from vcritic.errors import VcriticError
from vcritic.model.runtime import resolve_device, resolve_dtype
from vcritic.readout.next_token import answer_token_ids, expectation
from vcritic.readout.prompts import COMPARE, QUALITY, Question, render_prompt, vicuna_prompt
from vcritic.testing import LLAVA_TEMPLATE, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


# -- prompts ---------------------------------------------------------------------------------------------------------
def test_vicuna_prompt_is_the_papers_format():
    assert (
        vicuna_prompt("<IQA_QUANT> Rate it.", 1, "<image>")
        == "Human: <img1><image></img1><IQA_QUANT> Rate it. Assistant: "
    )
    assert vicuna_prompt("Which?", 2, None) == "Human: <img1></img1><img2></img2>Which? Assistant: "


class _TemplateProcessor:
    """Just enough of a processor to render a chat template (the real template machinery of transformers)."""

    def __init__(self, tokenizer, template):
        self.tokenizer = tokenizer
        self.chat_template = template

    def apply_chat_template(self, messages, **kwargs):
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, **kwargs)


def test_chat_template_prompt_has_identifier_images_and_answer_prefix(tokenizer):
    processor = _TemplateProcessor(tokenizer, LLAVA_TEMPLATE)
    text = render_prompt(processor, QUALITY, image_placeholder="<image>")
    assert text == f"USER: <image>\n<IQA_QUANT> {QUALITY.instruction} ASSISTANT: {QUALITY.answer_prefix}"
    pair = render_prompt(processor, COMPARE, image_placeholder="<image>")
    assert pair.count("<image>") == 2 and "<IQA" not in pair and pair.endswith(COMPARE.answer_prefix)


def test_processor_without_template_falls_back_to_vicuna(tokenizer):
    processor = _TemplateProcessor(tokenizer, None)
    assert render_prompt(processor, QUALITY, image_placeholder=None) == (
        f"Human: <img1></img1><IQA_QUANT> {QUALITY.instruction} Assistant: {QUALITY.answer_prefix}"
    )


# -- readout ---------------------------------------------------------------------------------------------------------
def test_answer_words_are_single_tokens_read_in_context(tokenizer):
    ids = answer_token_ids(tokenizer, QUALITY)
    assert ids == [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word)[0]) for word in QUALITY.words]
    assert len(set(ids)) == 5


def test_answer_words_sharing_a_first_token_are_refused(tokenizer):
    clash = Question("clash", "", ("q",), "It is", ((" excellent", 1.0), (" excellent!", 0.0)))
    with pytest.raises(VcriticError) as caught:
        answer_token_ids(tokenizer, clash, model="org/some-model")
    # The message names the model and both words, on one line.
    assert caught.value.message == (
        "the tokenizer of org/some-model splits the answer words 'excellent' and 'excellent!' for 'clash' into "
        "tokens that start the same, so they cannot be told apart"
    )


def test_expectation_of_uniform_and_certain_distributions():
    values = (100.0, 75.0, 50.0, 25.0, 0.0)
    logits = torch.full((2, 10), -5.0)
    logits[0, [1, 2, 3, 4, 5]] = 0.0  # uniform over the five levels
    logits[1, 2] = 80.0  # certain: the second level ("good")
    out = expectation(logits, [1, 2, 3, 4, 5], values)
    assert out.mean.tolist() == pytest.approx([50.0, 75.0])
    assert out.std[0].item() == pytest.approx(math.sqrt(1250.0))  # population std of 0,25,50,75,100
    assert out.std[1].item() == pytest.approx(0.0, abs=1e-3)
    assert out.probs.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])


def test_expectation_ignores_logits_of_other_tokens():
    base = torch.zeros(1, 8)
    other = base.clone()
    other[0, 7] = 100.0  # a token outside the answer words
    a = expectation(base, [0, 1], (1.0, 0.0))
    b = expectation(other, [0, 1], (1.0, 0.0))
    assert a.mean.item() == b.mean.item() == 0.5


# -- images ----------------------------------------------------------------------------------------------------------
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


# -- device and dtype ------------------------------------------------------------------------------------------------
def test_cpu_defaults_to_float32():
    device = resolve_device("cpu")
    assert device.type == "cpu"
    assert resolve_dtype(None, device) == torch.float32
    assert resolve_dtype("bf16", device) == torch.bfloat16


@pytest.mark.parametrize(
    ("device", "dtype", "message"),
    [("tpu", None, "unknown device|unsupported device"), ("cpu", "int8", "unknown dtype")],
)
def test_bad_device_or_dtype_is_a_user_error(device, dtype, message):
    with pytest.raises(VcriticError, match=message):
        resolve_dtype(dtype, resolve_device(device))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_gpu_is_a_user_error():
    with pytest.raises(VcriticError, match="no CUDA GPU"):
        resolve_device("cuda")
