"""--batch-size auto and halving on CUDA out-of-memory, proven on CPU by a forward hook that raises the real
``torch.cuda.OutOfMemoryError`` for batches larger than a limit."""

from __future__ import annotations

import pytest
from support.image_lists import image_paths
from support.memory import OutOfMemoryAbove
from typer.testing import CliRunner

from vcritic.cli.app import app
from vcritic.engine.batches import TOO_LARGE, BatchPlan
from vcritic.errors import VcriticError
from vcritic.inference.loading import load_critic
from vcritic.pipeline.scoring import compare_paths, score_paths


@pytest.fixture(scope="module")
def critic(tiny_models):
    return load_critic(tiny_models("llava"), device="cpu")


@pytest.fixture
def thirteen(tmp_path, sample_images):
    """Thirteen images of different sizes and an unreadable file among them."""
    return image_paths(tmp_path, sample_images, 13, broken_at=(5,))


def test_out_of_memory_halves_the_batch_and_loses_no_row(critic, thirteen):
    reference = list(score_paths(critic, thirteen, batch_size=8, workers=0))
    plan = BatchPlan(8)
    with OutOfMemoryAbove(critic.model, limit=3) as hook:
        rows = list(score_paths(critic, thirteen, batch_size=plan, workers=0))
    assert [r.path for r in rows] == thirteen  # every input once, in input order
    assert [r.error for r in rows] == [r.error for r in reference] and rows[5].error
    for got, want in zip(rows, reference, strict=True):
        if want.mos is not None:
            assert got.mos == pytest.approx(want.mos, abs=1e-4)
            assert got.mos_std == pytest.approx(want.mos_std, abs=1e-4)
    assert plan.current == 2 and plan.halvings == 2
    assert plan.describe() == "batch size 2 (halved from 8 after running out of GPU memory)"
    assert max(hook.seen) == 7 and hook.seen.count(7) == 1  # 8 inputs, 1 unreadable: tried once at full size
    assert all(rows_ <= 2 for rows_ in hook.seen[hook.seen.index(2) :])  # later batches stay at the smaller size


def test_an_image_too_large_alone_becomes_an_error_row(critic, thirteen):
    with OutOfMemoryAbove(critic.model, limit=0):
        rows = list(score_paths(critic, thirteen[:4], batch_size=4, workers=0))
    assert [r.path for r in rows] == thirteen[:4]
    assert all(r.error == TOO_LARGE and r.mos is None for r in rows)


def test_compare_pairs_survive_out_of_memory_too(critic, thirteen):
    pairs = [(thirteen[i], thirteen[i + 1]) for i in range(6, 12)]
    reference = [r.p_a_better for r in compare_paths(critic, pairs, batch_size=6, workers=0)]
    plan = BatchPlan(6)
    with OutOfMemoryAbove(critic.model, limit=4):  # a pair is two prompts: 6 pairs = 12 rows
        got = [r.p_a_better for r in compare_paths(critic, pairs, batch_size=plan, workers=0)]
    assert got == pytest.approx(reference, abs=1e-5)
    assert plan.current == 1  # 6 -> 3 -> 1 pair(s), i.e. 2 rows
    assert plan.describe() == "batch size 1 (halved from 6 after running out of GPU memory)"


def test_the_python_api_halves_on_out_of_memory_too(critic, sample_images):
    pictures = [image.resize((40 + 7 * i, 36 + 5 * i)) for i, image in enumerate(list(sample_images.values()) * 2)]
    reference = critic.score(pictures, batch_size=8)
    pairs = list(zip(pictures, pictures[1:], strict=False))
    reference_pairs = critic.compare(pairs, batch_size=4)
    with OutOfMemoryAbove(critic.model, limit=3) as hook:
        got = critic.score(pictures, batch_size=8)
        got_pairs = critic.compare(pairs, batch_size=4)  # a pair is two prompts
    assert [s.mos for s in got] == pytest.approx([s.mos for s in reference], abs=1e-4)
    assert [c.p_a_better for c in got_pairs] == pytest.approx([c.p_a_better for c in reference_pairs], abs=1e-5)
    # score: 8 images tried once, then 4, then 2 from there on; compare (its own call) tries 4 pairs = 8 rows once.
    assert hook.seen[:3] == [8, 4, 2] and hook.seen.count(8) == 2 and max(hook.seen[3:]) == 8
    with OutOfMemoryAbove(critic.model, limit=0), pytest.raises(VcriticError, match="out of GPU memory even alone"):
        critic.score(pictures[:2], batch_size="auto")


def test_out_of_memory_with_worker_processes(critic, thirteen):
    reference = [r.mos for r in score_paths(critic, thirteen, batch_size=4, workers=0)]
    with OutOfMemoryAbove(critic.model, limit=2):
        got = [r.mos for r in score_paths(critic, thirteen, batch_size=4, workers=1)]
    assert [g is None for g in got] == [r is None for r in reference]
    assert [g for g in got if g is not None] == pytest.approx([r for r in reference if r is not None], abs=1e-4)


def test_batch_size_auto_on_cpu_and_bad_values(tiny_llava, thirteen, tmp_path):
    runner = CliRunner()
    out = tmp_path / "auto.csv"
    result = runner.invoke(app, ["score", *thirteen[:3], "-m", str(tiny_llava), "-b", "auto", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "batch size 8 (auto)" in result.output
    assert len(out.read_text().splitlines()) == 4
    result = runner.invoke(app, ["score", thirteen[0], "-m", str(tiny_llava), "-b", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "'0' is not a positive number or 'auto'" in result.output
