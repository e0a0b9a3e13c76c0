"""A family vcritic has no code of its own for (LLaVA-OneVision: anyres tiles, a Qwen2 decoder) runs through
``AutoModelForImageTextToText`` and its chat template alone, and still scores and compares correctly."""

from __future__ import annotations

import pytest
from support.families import HAS_TORCHVISION

from vcritic import testing
from vcritic.inference import encoder as encoder_module
from vcritic.inference import shared_prefix
from vcritic.inference.loading import load_critic
from vcritic.model import vision_attention

pytestmark = [
    pytest.mark.needs_torchvision,
    pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision"),
]
FAMILY = "llava_onevision"
TOLERANCE = 1e-4  # on the 0-100 scale


@pytest.fixture(scope="module")
def critic(tiny_models):
    return load_critic(str(tiny_models(FAMILY)), device="cpu")


def test_vcritic_has_no_code_for_this_family(critic):
    assert critic.family.model_type == FAMILY
    named = (encoder_module.SINGLE_IMAGE_FAMILIES, shared_prefix.QUESTION_DEPENDENT_IMAGE, vision_attention.FAMILIES)
    assert all(FAMILY not in names for names in named) and FAMILY not in testing.FAMILIES


def test_scores_tell_images_apart_and_do_not_depend_on_the_batch(critic, sample_images):
    images = list(sample_images.values())  # sizes and aspect ratios that pick different tile grids
    alone = [critic.score(image).mos for image in images]
    together = critic.score(images, batch_size=len(images))
    assert all(0.0 <= s.mos <= 100.0 for s in together)
    assert len({round(s.mos, 4) for s in together}) == len(images)
    assert [s.mos for s in together] == pytest.approx(alone, abs=TOLERANCE)


def test_compare_is_symmetric(critic, sample_images):
    a, b = sample_images["astronaut"], sample_images["rocket"]
    forward, backward = critic.compare(a, b).p_a_better, critic.compare(b, a).p_a_better
    assert 0.0 < forward < 1.0 and forward + backward == pytest.approx(1.0, abs=1e-6)
    assert critic.compare(a, a).p_a_better == pytest.approx(0.5, abs=1e-6)


@pytest.mark.slow
def test_all_tasks_and_describe_match_the_plain_paths(critic, sample_images):
    image = sample_images["chelsea"]
    every = critic.score(image, tasks="all")
    assert every.mos == pytest.approx(critic.score(image).mos, abs=TOLERANCE)
    assert critic.describe(image, max_new_tokens=6).text == critic.generate(image, max_new_tokens=6)
