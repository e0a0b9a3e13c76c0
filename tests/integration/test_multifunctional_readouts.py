"""Attributes, authenticity and descriptions, for every family: in range, one image encoding for all questions with
the same numbers as asking one question at a time, deterministic text."""

from __future__ import annotations

import contextlib
import io

import pytest
from support.families import family_params

from vcritic.cli.describe import text_streamer  # the streamer the command line prints with
from vcritic.datasets import ATTRIBUTES
from vcritic.inference.loading import load_critic
from vcritic.inference.shared_prefix import QUESTION_DEPENDENT_IMAGE
from vcritic.pipeline.scoring import score_paths
from vcritic.readout.prompts import ATTRIBUTE_QUESTIONS, AUTHENTICITY_QUESTION, QUALITY
from vcritic.readout.tasks import task_questions

TOLERANCE = 1e-4  # on the 0-100 scale; CPU float32


@pytest.fixture(params=family_params())
def critic(request, tiny_models):
    return load_critic(str(tiny_models(request.param)), device="cpu")


def _alone(critic, question, image) -> float:
    """One question, one image, the plain full-prompt forward pass (no shared prefix)."""
    batch = critic.encoder.collate([critic.encoder.encode(question, [image])])
    return float(critic.read_single(question, batch).mean[0])


def _value(score, question) -> float:
    if question.name == QUALITY.name:
        return score.mos
    if question.name == AUTHENTICITY_QUESTION.name:
        return score.p_ai_generated
    return score.attributes[question.name]


@pytest.mark.slow
def test_every_output_in_range_and_equal_to_asking_one_question_at_a_time(critic, sample_images):
    images = list(sample_images.values())  # different sizes, aspect ratios and modes
    together = critic.score(images, tasks="all", batch_size=len(images))
    for score in together:
        assert 0 <= score.mos <= 100 and 0 <= score.p_ai_generated <= 1
        assert set(score.attributes) == set(score.attributes_std) == set(ATTRIBUTES)
        assert all(0 <= score.attributes[a] <= 100 and 0 <= score.attributes_std[a] <= 50 for a in ATTRIBUTES)
    outputs = {tuple(round(v, 5) for v in (s.p_ai_generated, *s.attributes.values())) for s in together}
    assert len(outputs) == len(images), "different images must get different read-outs"

    # The shared prefix was really used (InstructBLIP's Q-Former reads the question: one batch of full prompts).
    split = critic.encoder.prompt_splits[tuple(q.name for q in task_questions(["mos", "attributes", "authenticity"]))]
    assert split.exact is (None if critic.family.model_type in QUESTION_DEPENDENT_IMAGE else True)

    for image, score in zip(images, together, strict=True):
        one_image = critic.score(image, tasks="all")  # batch of one
        for question in task_questions(["mos", "attributes", "authenticity"]):
            expected = _alone(critic, question, image)
            assert _value(score, question) == pytest.approx(expected, abs=TOLERANCE), question.name
            assert _value(one_image, question) == pytest.approx(expected, abs=TOLERANCE), question.name


@pytest.mark.slow
def test_all_tasks_equal_the_union_of_single_task_runs_through_the_file_pipeline(critic, image_dir):
    files = sorted(image_dir.iterdir())
    every = list(score_paths(critic, files, tasks=("mos", "attributes", "authenticity"), batch_size=4, workers=0))
    mos = list(score_paths(critic, files, batch_size=1, workers=0))
    attributes = list(score_paths(critic, files, tasks=("attributes",), batch_size=3, workers=0))
    authenticity = list(score_paths(critic, files, tasks=("authenticity",), batch_size=2, workers=0))
    for row, m, a, p in zip(every, mos, attributes, authenticity, strict=True):
        assert row.error is None and row.path == m.path == a.path == p.path
        assert row.mos == pytest.approx(m.mos, abs=TOLERANCE) and row.mos_std == pytest.approx(m.mos_std, abs=TOLERANCE)
        assert row.attributes == pytest.approx(a.attributes, abs=TOLERANCE)
        assert row.attributes_std == pytest.approx(a.attributes_std, abs=TOLERANCE)
        assert row.p_ai_generated == pytest.approx(p.p_ai_generated, abs=1e-6)
        assert m.attributes == {} and m.p_ai_generated is None and a.mos is None and p.mos is None


def test_describe_is_deterministic_and_streamed_as_written(critic, sample_images):
    image = sample_images["chelsea"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        first = critic.describe(image, tasks="mos", max_new_tokens=8, streamer=text_streamer(critic.tokenizer))
    second = critic.describe(image, tasks="none", max_new_tokens=8)
    assert first.text and first.text == second.text
    assert printed.getvalue().strip() == first.text  # the streamer saw exactly the returned text
    assert first.score.mos == pytest.approx(critic.score(image).mos, abs=TOLERANCE)
    assert first.score.attributes == {} and second.score is None


class VisionCalls:
    """Counts forward calls of the model's vision tower (one per image encoding of a batch)."""

    def __init__(self, critic):
        model = critic.base_model()
        names = [
            n for n, _ in model.named_modules() if n.rpartition(".")[2] in ("vision_tower", "vision_model", "visual")
        ]
        self.count = 0
        model.get_submodule(names[0]).register_forward_hook(self._called)

    def _called(self, *_):
        self.count += 1

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


def test_describe_encodes_the_image_once_for_the_text_and_the_numbers(critic, sample_images):
    """The text is what a plain generate over the full DESCRIBE prompt writes, the numbers are score()'s, and the
    vision tower runs once (InstructBLIP, whose image tokens depend on the question, keeps two passes)."""
    image = sample_images["rocket"]
    calls = VisionCalls(critic)
    expected_text = critic.generate(image, max_new_tokens=24)
    expected = critic.score(image, tasks="all")
    # The hook sees each encoding: one generate, one score (InstructBLIP: one per question, a forward each).
    per_question = critic.family.model_type in QUESTION_DEPENDENT_IMAGE
    assert calls.take() == 1 + (len(task_questions(["mos", "attributes", "authenticity"])) if per_question else 1)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        described = critic.describe(image, max_new_tokens=24, streamer=text_streamer(critic.tokenizer))
    assert calls.take() == (1 + len(task_questions(["mos", "attributes", "authenticity"])) if per_question else 1)
    assert described.text == expected_text and printed.getvalue().strip() == expected_text
    for question in task_questions(["mos", "attributes", "authenticity"]):
        assert _value(described.score, question) == pytest.approx(_value(expected, question), abs=TOLERANCE)
    assert described.score.mos_std == pytest.approx(expected.mos_std, abs=TOLERANCE)

    assert critic.describe(image, tasks="none", max_new_tokens=24).text == expected_text
    assert calls.take() == 1


def test_describe_without_a_checked_prompt_split_runs_two_passes_with_the_same_results(tiny_llava, sample_images):
    from vcritic.inference.shared_prefix import PromptSplit
    from vcritic.readout.prompts import DESCRIBE

    critic = load_critic(str(tiny_llava), device="cpu")
    image = sample_images["coffee"]
    shared = critic.describe(image, tasks="attributes", max_new_tokens=12)
    questions = (DESCRIBE, *task_questions(["attributes"]))
    split = PromptSplit(critic.encoder, questions)
    split.suffix_ids = [ids[1:] for ids in split.suffix_ids]  # as if the tokenizer merged across the boundary
    critic.encoder.prompt_splits[tuple(q.name for q in questions)] = split
    calls = VisionCalls(critic)
    fallback = critic.describe(image, tasks="attributes", max_new_tokens=12)
    assert split.exact is False and calls.take() == 2
    assert fallback.text == shared.text == critic.generate(image, max_new_tokens=12)
    assert fallback.score.attributes == pytest.approx(shared.score.attributes, abs=TOLERANCE)


def test_a_prompt_split_that_does_not_reproduce_the_full_prompt_falls_back_to_full_prompts(tiny_llava, sample_images):
    """If prefix + suffix tokens ever differ from the full prompt's tokens, the check on the first image catches it
    and every image gets full prompts (one batch per image), with the same numbers."""
    from vcritic.inference.shared_prefix import PromptSplit

    critic = load_critic(str(tiny_llava), device="cpu")
    questions = task_questions(["attributes"])
    image = sample_images["coffee"]
    shared = critic.score(image, tasks="attributes")
    split = PromptSplit(critic.encoder, questions)
    split.suffix_ids = [ids[1:] for ids in split.suffix_ids]  # as if the tokenizer merged across the boundary
    critic.encoder.prompt_splits[tuple(q.name for q in questions)] = split
    fallback = critic.score(image, tasks="attributes")
    assert split.exact is False
    assert "full" in critic.encoder.encode_questions(questions, image)
    assert fallback.attributes == pytest.approx(shared.attributes, abs=TOLERANCE)


def test_a_template_that_puts_the_question_before_the_image_gets_full_prompts(tiny_llava, sample_images):
    from vcritic.testing import LLAVA_TEMPLATE

    critic = load_critic(str(tiny_llava), device="cpu")
    # The same LLaVA template with the text before the image: no common prefix holds the image.
    critic.processor.chat_template = LLAVA_TEMPLATE.replace(
        "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
        "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}",
        "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
        "{% for item in message['content'] %}{% if item['type'] == 'image' %}\n<image>{% endif %}{% endfor %}",
    )
    assert critic.prompt(QUALITY).startswith("USER: <IQA_QUANT>")
    image = sample_images["rocket"]
    score = critic.score(image, tasks="all")
    assert "full" in critic.encoder.encode_questions(task_questions(["attributes"]), image)
    for question in task_questions(["mos", "attributes", "authenticity"]):
        assert _value(score, question) == pytest.approx(_alone(critic, question, image), abs=TOLERANCE)


def test_attribute_questions_read_the_same_level_words_as_mos():
    for question in ATTRIBUTE_QUESTIONS.values():
        assert question.choices == QUALITY.choices  # so every attribute is on MOS's 0-100 scale
    assert AUTHENTICITY_QUESTION.values == (0.0, 1.0)  # the expectation is P(AI-generated)
