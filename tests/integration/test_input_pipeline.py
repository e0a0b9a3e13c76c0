"""The file-input side's shortcuts give the same bits as the plain way: pixels cast to the model's dtype before a
Qwen2-VL processor patchifies them, items cast before they are concatenated."""

from __future__ import annotations

import torch
from PIL import Image

from vcritic.inference.loading import load_critic
from vcritic.pipeline.scoring import _Collate, _EncodeQuestions, _ImageDataset, pixels_cast_early
from vcritic.readout.prompts import QUALITY
from vcritic.readout.tasks import task_questions


def test_pixels_cast_before_patchify_equal_those_cast_after(tiny_models, sample_images):
    from vcritic.pipeline.scoring import _stock_patchify

    critic = load_critic(tiny_models("qwen2_5_vl"), device="cpu")
    processor = critic.encoder.processor
    # The early cast needs the stock patchify of current transformers (5.7's processor has another): without it the
    # pixels stay float32 until the collate casts them, with the same bits.
    applies = _stock_patchify(processor.image_processor) is not None
    for image in [*sample_images.values(), Image.new("RGB", (97, 61), (10, 200, 30))]:
        plain = processor.image_processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
        with pixels_cast_early(processor, torch.bfloat16):
            early = processor.image_processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
        assert early.dtype == (torch.bfloat16 if applies else torch.float32)
        as_bf16 = early.to(torch.bfloat16).view(torch.int16)
        assert torch.equal(as_bf16, plain.to(torch.bfloat16).view(torch.int16))
    assert "patchify" not in vars(processor.image_processor)  # the processor is left as it was
    assert processor.image_processor(images=[image], return_tensors="pt")["pixel_values"].dtype == torch.float32


def test_processors_without_qwen_patchify_are_left_alone(tiny_models, sample_images):
    critic = load_critic(tiny_models("llava"), device="cpu")
    image = next(iter(sample_images.values())).convert("RGB")
    with pixels_cast_early(critic.encoder.processor, torch.bfloat16):
        pixels = critic.encoder.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    assert pixels.dtype == torch.float32


def test_a_batch_cast_item_by_item_equals_one_cast_after_padding(tiny_models, tmp_path, sample_images):
    critic = load_critic(tiny_models("qwen2_5_vl"), device="cpu")
    paths = []
    for i, image in enumerate(sample_images.values()):
        path = tmp_path / f"{i}.png"
        image.convert("RGB").resize((40 + 13 * i, 50)).save(path)
        paths.append(str(path))
    for questions in ([QUALITY], task_questions(("mos", "attributes"))):
        encode = _EncodeQuestions(questions)
        fp32 = _ImageDataset(critic.encoder, paths, encode)
        bf16 = _ImageDataset(critic.encoder, paths, encode, torch.bfloat16)
        plain = _Collate(critic.encoder, True)([fp32[i] for i in range(len(paths))])[2]
        early = _Collate(critic.encoder, True, torch.bfloat16)([bf16[i] for i in range(len(paths))])[2]
        want, got = _flat(plain), _flat(early)
        assert want.keys() == got.keys()
        for key, tensor in want.items():
            expected = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
            assert got[key].dtype == expected.dtype and torch.equal(got[key], expected), key


def _flat(batch, prefix=""):
    out = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            out[prefix + key] = value
    return out
