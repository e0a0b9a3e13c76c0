"""Every supported model family, built tiny from its real config and loaded the way users load checkpoints."""

from __future__ import annotations

import pytest
from support.families import family_params

from vcritic.inference.loading import load_critic
from vcritic.pipeline.scoring import compare_paths, score_paths

pytestmark = pytest.mark.parametrize("family", family_params())

TOLERANCE = 1e-4  # on the 0-100 scale


@pytest.fixture
def critic(tiny_models, family):
    return load_critic(str(tiny_models(family)), device="cpu")


def test_scores_are_on_the_0_100_scale_and_tell_images_apart(critic, sample_images):
    scores = critic.score(list(sample_images.values()))
    for score in scores:
        assert 0.0 <= score.mos <= 100.0
        assert 0.0 <= score.mos_std <= 50.0
        assert sum(score.probs.values()) == pytest.approx(1.0, abs=1e-5)
    distinct = {round(score.mos, 4) for score in scores}
    assert len(distinct) == len(scores), "different images must get different scores"


def test_score_does_not_depend_on_batch_neighbours(critic, sample_images):
    images = list(sample_images.values())  # different sizes, aspect ratios and modes
    alone = [critic.score([image])[0].mos for image in images]
    together = [score.mos for score in critic.score(images, batch_size=len(images))]
    reversed_batch = [score.mos for score in critic.score(images[::-1], batch_size=4)][::-1]
    assert together == pytest.approx(alone, abs=TOLERANCE)
    assert reversed_batch == pytest.approx(alone, abs=TOLERANCE)


def test_compare_is_symmetric(critic, sample_images):
    a, b, c = sample_images["astronaut"], sample_images["coffee"], sample_images["rocket"]
    forward = [c.p_a_better for c in critic.compare([(a, b), (b, c)])]
    backward = [c.p_a_better for c in critic.compare([b, c], [a, b])]
    for p, q in zip(forward, backward, strict=True):
        assert 0.0 < p < 1.0
        assert p + q == pytest.approx(1.0, abs=1e-6)
    assert critic.compare(a, a).p_a_better == pytest.approx(0.5, abs=1e-6)


def test_file_pipeline_matches_in_memory_scores_and_reports_bad_files(critic, image_dir, sample_images):
    files = sorted(image_dir.iterdir())
    broken = image_dir / "zz_broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    rows = list(score_paths(critic, [*files, broken], batch_size=3, workers=0))
    assert [row.path for row in rows] == [str(p) for p in [*files, broken]]
    assert rows[-1].mos is None and "not an image" in rows[-1].error
    by_name = {row.path.rsplit("/", 1)[-1].split(".")[0]: row.mos for row in rows[:-1]}
    # JPEG files are lossy, so compare the PNG ones with the in-memory images exactly.
    for path in files:
        if path.suffix == ".png":
            expected = critic.score([sample_images[path.stem]])[0].mos
            assert by_name[path.stem] == pytest.approx(expected, abs=TOLERANCE)
    single = list(score_paths(critic, files, batch_size=1, workers=0))
    assert [row.mos for row in single] == pytest.approx([row.mos for row in rows[:-1]], abs=TOLERANCE)


def test_pair_pipeline_matches_in_memory_compare(critic, image_dir, sample_images):
    a, b = image_dir / "astronaut.png", image_dir / "logo.png"
    rows = list(compare_paths(critic, [(a, b), (b, a), (a, image_dir / "missing.png")], batch_size=2, workers=0))
    expected = critic.compare(sample_images["astronaut"], sample_images["logo"]).p_a_better
    assert rows[0].p_a_better == pytest.approx(expected, abs=1e-6)
    assert rows[0].p_a_better + rows[1].p_a_better == pytest.approx(1.0, abs=1e-6)
    assert rows[2].p_a_better is None and rows[2].error == "file not found"
