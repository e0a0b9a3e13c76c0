"""The file pipeline's overlap (one batch in flight while the next is launched) and the pixels cast in the workers:
the same rows, in the same order, with the same values as the serial loop; rows given out one launch behind; an
out-of-memory error, another error or Ctrl-C in the next launch loses none of the batch in flight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.image_lists import image_paths

from vcritic.engine.batches import BatchPlan
from vcritic.inference.loading import load_critic
from vcritic.pipeline.scoring import _Collate, _EncodeQuestions, _loader, compare_paths, score_paths
from vcritic.readout.tasks import task_questions


@pytest.fixture(scope="module")
def critic(tiny_models):
    return load_critic(tiny_models("llava"), device="cpu")


@pytest.fixture
def files(tmp_path, sample_images):
    """Eleven images of different sizes with unreadable files among them: one inside the first batch of three and
    a pair that makes a whole batch of two unreadable."""
    return image_paths(tmp_path, sample_images, 11, broken_at=(1, 6, 7))


class Forwards:
    """A forward pre-hook on the model that counts forwards and can raise ``error`` at forward number ``at``."""

    def __init__(self, model, at: int | None = None, error: BaseException | None = None):
        self.at, self.error, self.seen = at, error, []
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.seen.append(kwargs["input_ids"].shape[0])
        if len(self.seen) == self.at:
            raise self.error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _rows(rows):
    return [(r.path, r.mos, r.mos_std, r.error, r.attributes, r.p_ai_generated) for r in rows]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
def test_overlap_gives_exactly_the_rows_of_the_serial_loop(critic, files, batch_size):
    serial = list(score_paths(critic, files, batch_size=batch_size, workers=0, overlap=False))
    overlapped = list(score_paths(critic, files, batch_size=batch_size, workers=0))
    assert [r.path for r in overlapped] == files
    assert [bool(r.error) for r in overlapped] == [i in (1, 6, 7) for i in range(len(files))]
    assert _rows(overlapped) == _rows(serial)  # same values to the bit, same errors, same order


def test_overlap_with_worker_processes_several_tasks_and_compare(critic, files):
    tasks = ("mos", "attributes", "authenticity")  # the shared-prefix path: several questions per image
    serial = list(score_paths(critic, files, tasks=tasks, batch_size=3, workers=0, overlap=False))
    overlapped = list(score_paths(critic, files, tasks=tasks, batch_size=3, workers=1))
    assert _rows(overlapped) == _rows(serial)
    assert all(len(r.attributes) == 5 and r.p_ai_generated is not None for r in overlapped if not r.error)
    pairs = [(files[i], files[i + 1]) for i in range(len(files) - 1)]
    serial_pairs = list(compare_paths(critic, pairs, batch_size=2, workers=0, overlap=False))
    overlapped_pairs = list(compare_paths(critic, pairs, batch_size=2, workers=1))
    assert overlapped_pairs == serial_pairs
    assert [r.error is not None for r in overlapped_pairs] == [files[1] in pair for pair in pairs]


def test_a_batch_comes_out_right_after_the_next_launch(critic, files):
    """Rows of batch k are given after batch k+1's forward started and before batch k+2's; a batch with no
    readable image comes out at once (nothing to wait for)."""
    for overlap, expected in ((True, [2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 5]),
                              (False, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5])):  # fmt: skip
        with Forwards(critic.model) as forwards:
            launched_before_row = [len(forwards.seen) for _ in score_paths(critic, files, batch_size=3, workers=0,
                                                                           overlap=overlap)]  # fmt: skip
        # Batches of 3: [0 1b 2], [3 4 5], [6b 7b 8], [9 10 11], [12 13]: 2 + 3 + 1 + 3 + 2 forward rows.
        assert forwards.seen == [2, 3, 1, 3, 2]
        assert launched_before_row == expected, overlap
    with Forwards(critic.model) as forwards:
        given = [len(forwards.seen) for _ in score_paths(critic, files[4:], batch_size=2, workers=0)]
    # Batches of 2 from file 4: [4 5], [6b 7b], [8 9], [10 11], [12 13]: the unreadable pair needs no forward, so it
    # follows batch [4 5] at once, both given before any later launch.
    assert given == [1, 1, 1, 1, 3, 3, 4, 4, 4, 4]


@pytest.mark.parametrize("overlap", [True, False])
def test_out_of_memory_at_the_next_launch_keeps_the_batch_in_flight(critic, files, overlap):
    reference = _rows(score_paths(critic, files, batch_size=4, workers=0))
    plan = BatchPlan(4)
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory (injected at the second forward)")
    with Forwards(critic.model, at=2, error=oom) as forwards:
        rows = _rows(score_paths(critic, files, batch_size=plan, workers=0, overlap=overlap))
    assert [r[0] for r in rows] == files  # every input once, in order: none lost, none twice
    # Values equal the full-size run to float rounding: other batch shapes pad the prompts differently.
    assert [r[3] for r in rows] == [r[3] for r in reference]
    assert [r[1] for r in rows] == pytest.approx([r[1] for r in reference], abs=1e-4)
    assert plan.current == 2 and plan.halvings == 1
    # [0 1b 2 3] ran; [4 5 6b 7b] ran out of memory and was redone at 2 (from file 4); batch one was not run again.
    assert forwards.seen[:3] == [3, 2, 2] and sum(forwards.seen) == 3 + 2 + len(files[4:]) - 2


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("device lost")], ids=["ctrl-c", "error"])
def test_an_interruption_at_the_next_launch_still_gives_the_batch_in_flight(critic, files, error):
    """The rows finished before Ctrl-C (or another error) in a launch are given out, as with the serial loop."""
    given = {}
    for overlap in (True, False):
        rows = []
        with Forwards(critic.model, at=3, error=error), pytest.raises(type(error)):
            for row in score_paths(critic, files, batch_size=3, workers=0, overlap=overlap):
                rows.append(row)
        given[overlap] = _rows(rows)
    # Forwards 1 and 2 are batches [0 1b 2] and [3 4 5]; the unreadable [6b 7b 8] raised at its third forward.
    assert [r[0] for r in given[True]] == files[:6]
    assert given[True] == given[False]


def test_pixels_cast_in_the_worker_give_the_same_scores_to_the_bit(tiny_models, files):
    """bfloat16 pixels travel from the workers at half the bytes, and the scores equal casting them after the copy
    (on the device; on a CPU both casts run on it, a GPU's rounding is checked by benchmarks/gpu_session.sh)."""
    critic = load_critic(tiny_models("qwen2_5_vl"), device="cpu", dtype="bfloat16")
    questions = task_questions(("mos",))
    loader = _loader(critic, files[:3], 0, _EncodeQuestions(questions), 3, 1, True, critic.dtype)
    (_, _, cast), *_ = list(loader)
    (_, _, kept), *_ = list(_loader(critic, files[:3], 0, _EncodeQuestions(questions), 3, 0, True, None))
    assert (
        cast["prefix"]["pixel_values"].dtype == torch.bfloat16 and kept["prefix"]["pixel_values"].dtype == torch.float32
    )
    assert cast["prefix"]["pixel_values"].nbytes * 2 == kept["prefix"]["pixel_values"].nbytes
    assert torch.equal(cast["prefix"]["image_grid_thw"], kept["prefix"]["image_grid_thw"])  # integers untouched
    serial = _rows(score_paths(critic, files, batch_size=4, workers=0, overlap=False))
    assert _rows(score_paths(critic, files, batch_size=4, workers=1)) == serial
    several = ("mos", "attributes")  # several questions: the same layout
    collate = _Collate(critic.encoder, questions=True, dtype=torch.bfloat16)
    encoded = [(0, _EncodeQuestions(task_questions(several))(critic.encoder, files[0]), None)]
    assert collate(encoded)[2]["prefix"]["pixel_values"].dtype == torch.bfloat16
    assert _rows(score_paths(critic, files, tasks=several, batch_size=4, workers=0)) == _rows(
        score_paths(critic, files, tasks=several, batch_size=4, workers=0, overlap=False)
    )


def _bfloat16_nearest_even(values: np.ndarray) -> np.ndarray:
    """IEEE round-to-nearest-even of float32 to bfloat16, on the bits (NaN kept quiet), as float32."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    out = (rounded & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(values), np.float32("nan"), out)


def test_the_cpu_cast_to_bfloat16_rounds_to_nearest_even():
    """What makes the worker cast equal the GPU's: CUDA's float-to-bfloat16 conversion rounds to nearest even."""
    rng = np.random.default_rng(0)
    edge = np.array([0.0, -0.0, 1.0, 1.00390625, 1.01171875, 1 + 2**-8 + 2**-20, 3.3895314e38, 3.4028235e38,
                     np.inf, -np.inf, 1e-40, -1e-45, 2**-126, np.nan], dtype=np.float32)  # fmt: skip
    pixels = rng.normal(0, 1.5, 200_000).astype(np.float32)  # normalized pixel values
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)  # every float32 kind
    for values in (edge, pixels, bits):
        got = torch.from_numpy(values).to(torch.bfloat16).float().numpy()
        want = _bfloat16_nearest_even(values)
        same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
        assert same.all(), values[~same][:5]


def test_the_python_api_keeps_the_chunk_in_flight_through_out_of_memory(critic, sample_images):
    """Critic.score/compare (memory.in_batches) launch chunk k+1 before reading chunk k back: an OOM at that launch
    keeps chunk k, runs the rest at half the size, and the results equal a run that never ran out of memory."""
    pictures = [image.resize((40 + 7 * i, 36 + 5 * i)) for i, image in enumerate(list(sample_images.values()) + [
        sample_images["astronaut"]])]  # fmt: skip
    reference = critic.score(pictures, batch_size=3)
    plan = BatchPlan(3)
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory (injected at the second forward)")
    with Forwards(critic.model, at=2, error=oom) as forwards:
        got = critic.score(pictures, batch_size=plan)
    assert forwards.seen == [3, 3, 1, 1, 1, 1]  # chunk one kept; chunk two failed and was redone one by one
    assert plan.current == 1 and plan.halvings == 1
    assert [s.mos for s in got] == pytest.approx([s.mos for s in reference], abs=1e-4)
    assert [s.mos for s in got[:3]] == [s.mos for s in reference[:3]]  # the kept chunk: the same forward
    pairs = list(zip(pictures, pictures[1:], strict=False))
    with Forwards(critic.model, at=2, error=oom) as forwards:
        compared = critic.compare(pairs, batch_size=2)  # a pair is two prompts
    assert forwards.seen == [4, 4, 2, 2, 2, 2]  # 6 pairs: 2 kept, 2 failed, then 4 one by one
    assert [c.p_a_better for c in compared] == pytest.approx([c.p_a_better for c in critic.compare(pairs)], abs=1e-5)


def test_a_batch_that_cannot_be_finished_stops_the_rows_in_order(critic, files):
    """If reading batch k back fails, batch k+1 (already in flight) is not given out ahead of it."""
    from vcritic.pipeline.scoring import _batches

    questions = task_questions(("mos",))
    finished = []

    def finish(readouts):
        finished.append(len(readouts[0].mean))
        if len(finished) == 2:
            raise RuntimeError("read-back failed")
        return readouts[0].mean.tolist()

    def launch(batch):
        return critic.read_shared(questions, batch)

    given = []
    with pytest.raises(RuntimeError, match="read-back failed"):
        for indices, errors, _ in _batches(critic, files, _EncodeQuestions(questions), 3, 0, launch, finish,
                                           questions=True):  # fmt: skip
            given.append((indices, sorted(errors)))
    assert given == [([0, 2], [1])]  # batch one; batch two failed; batch three, launched, never came out
    assert finished == [2, 3]
