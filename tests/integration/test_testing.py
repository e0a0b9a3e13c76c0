"""The tiny-model builders' size knobs, used by the learning benchmark."""

from __future__ import annotations

from PIL import Image

from vcritic.inference.loading import load_critic
from vcritic.testing import LEARNER, build_llava
from vcritic.training.config import load_config


def test_learner_llava_has_the_asked_patches_and_depths_and_reads_a_pair(tmp_path):
    critic = load_critic(build_llava(tmp_path / "m", **LEARNER))
    vision = critic.model.config.vision_config
    assert (vision.patch_size, vision.image_size, vision.num_hidden_layers) == (4, 32, 3)
    assert critic.model.config.text_config.num_hidden_layers == 2

    first = Image.new("RGB", (32, 32), (200, 30, 30))
    second = Image.new("RGB", (32, 32), (30, 30, 200))
    batch = critic.encoder.encode_pair(first, second)
    image_token = critic.model.config.image_token_index
    assert int((batch["input_ids"] == image_token).sum()) == 2 * (32 // 4) ** 2  # 64 patches per image
    assert 0.0 < critic.compare(first, second).p_a_better < 1.0


def test_tiny_preset_trains_what_sees_the_image():
    config = load_config(1, "tiny")
    assert not config.freeze_vision and {"projector", "lm_head"} <= set(config.train_modules)
