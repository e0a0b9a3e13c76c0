"""How each judge is asked for a score, and what it was trained to answer: one :class:`ReadoutSpec` per read-out.

A spec is the model card's recipe, not a property of the model family: the user turn, the answer stem that follows
the chat template's generation prompt, the level words with the value each stands for (or, for a reasoning judge,
the number to parse from a generated answer), the scale of those values and how it maps onto vcritic's 0-100, and
the vcritic tasks the model was trained for. :meth:`ReadoutSpec.quality_question` turns it into the
:class:`~vcritic.readout.prompts.Question` that every model is asked through (shared prefix, batching and fixed shapes
unchanged); the other tasks are always vcritic's own questions.

- ``vcritic``: vcritic's VisualCritic prompts (:data:`vcritic.readout.prompts.QUALITY`), for zero-shot models and
folders
  trained by ``vcritic train``.
- ``q-realign``: Q-ReAlign's card (https://huggingface.co/q-future/Q-ReAlign-Mini-0.8B, "Quick Run"): the text is
  ``apply_chat_template(messages, add_generation_prompt=True) + "The quality of the image is"`` (no space), the
  level ids are the first tokens of ``" excellent"`` ... ``" bad"``, softmax over those five logits, weights
  1, 0.75, 0.5, 0.25, 0 -> a score in 0-1, times 100 here.
- ``visualquality-r1``: VisualQuality-R1's card (github.com/TianheWu/VisualQuality-R1, "Quick Start"): generate
  after its prompt, take the last ``<answer>...</answer>``, the first number in it (1-5), mapped linearly to 0-100.
  The card samples (``do_sample=True``); vcritic decodes greedily so that the same image gives the same score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vcritic.readout.prompts import LEVELS, QUALITY, Question

LEVELS_KIND = "levels"  # softmax over the level words' first tokens, one forward
REASONING_KIND = "reasoning"  # generate, then parse a number


@dataclass(frozen=True)
class ReadoutSpec:
    """One judge's MOS read-out, as its model card gives it, and the tasks it was trained for."""

    name: str
    kind: str  # LEVELS_KIND or REASONING_KIND
    prompt: str  # the user turn's text (after the image)
    stem: str  # what follows the generation prompt, up to the read-out word ("" for a reasoning judge)
    levels: tuple[tuple[str, float], ...] = ()  # (word with its leading space, value on the native scale)
    native_scale: tuple[float, float] = (0.0, 100.0)  # (worst, best) of the model's own output
    # None: vcritic's rule (a space between the generation prompt and the stem unless it ends in whitespace);
    # "": the stem appended exactly as the card does.
    stem_separator: str | None = None
    template_options: tuple[tuple[str, Any], ...] = ()  # extra apply_chat_template arguments the card passes
    task: str = ""  # vcritic's task identifier in the user turn ("<IQA_QUANT>"), "" for none
    answer_pattern: str = ""  # reasoning: the regex whose last match holds the answer (group 1)
    number_pattern: str = r"\d+(?:\.\d+)?"  # reasoning: the first match in the answer is the rating
    max_new_tokens: int = 0  # reasoning: the generation budget
    # The vcritic tasks (mos, attributes, authenticity) the model was trained to answer; None: a general model
    # (zero-shot for every task) or a trained folder whose vcritic.json says.
    trained_tasks: tuple[str, ...] | None = None
    source: str = ""  # where the recipe comes from

    @property
    def generates(self) -> bool:
        return self.kind == REASONING_KIND

    @property
    def scale_text(self) -> str:
        low, high = self.native_scale
        return f"{_number(low)}-{_number(high)}"

    def to_vcritic(self, value: float) -> float:
        """A value on the model's native scale, on vcritic's 0-100 (linear; worst -> 0, best -> 100)."""
        low, high = self.native_scale
        return (value - low) * 100.0 / (high - low)

    def quality_question(self) -> Question:
        """The MOS question of this read-out, with its values on vcritic's 0-100 scale."""
        if self.name == VCRITIC.name:
            return QUALITY  # the very object training teaches
        choices = tuple((word, self.to_vcritic(value)) for word, value in self.levels)
        return Question(
            name=QUALITY.name,
            task=self.task,
            instructions=(self.prompt,),
            answer_prefix=self.stem,
            choices=choices,
            stem_separator=self.stem_separator,
            readout=self.name,
            generates=self.generates,
            template_options=self.template_options,
        )

    def parse_rating(self, text: str) -> float | None:
        """A reasoning judge's rating from its generated ``text``, on vcritic's 0-100 (clamped), or None."""
        answers = re.findall(self.answer_pattern, text, re.DOTALL) if self.answer_pattern else []
        answer = answers[-1] if answers else text
        found = re.search(self.number_pattern, answer)
        if found is None:
            return None
        low, high = self.native_scale
        value = min(max(float(found.group()), min(low, high)), max(low, high))
        return self.to_vcritic(value)

    def untrained(self, tasks, trained: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """Which of ``tasks`` the judge was never trained for; () when it declares none (a general model)."""
        declared = trained if trained is not None else self.trained_tasks
        if declared is None:
            return ()
        return tuple(task for task in tasks if task not in declared)


def _number(value: float) -> str:
    return f"{value:g}"


VCRITIC = ReadoutSpec(
    name="vcritic",
    kind=LEVELS_KIND,
    prompt=QUALITY.instruction,
    stem=QUALITY.answer_prefix,
    levels=LEVELS,
    native_scale=(0.0, 100.0),
    task=QUALITY.task,
    source="vcritic.readout.prompts (VisualCritic's unified dialogue form)",
)

Q_REALIGN = ReadoutSpec(
    name="q-realign",
    kind=LEVELS_KIND,
    prompt="How would you rate the quality of this image?",
    stem="The quality of the image is",
    levels=((" excellent", 1.0), (" good", 0.75), (" fair", 0.5), (" poor", 0.25), (" bad", 0.0)),
    native_scale=(0.0, 1.0),
    stem_separator="",
    trained_tasks=("mos",),  # IQA, IAA (aesthetics) and VQA (video) in Q-ReAlign's terms: of vcritic's, MOS only
    source="https://huggingface.co/q-future/Q-ReAlign-Mini-0.8B (Quick Run)",
)

VISUALQUALITY_R1 = ReadoutSpec(
    name="visualquality-r1",
    kind=REASONING_KIND,
    prompt=(
        "You are doing the image quality assessment task. Here is the question: What is your overall rating on the "
        "quality of this picture? The rating should be a float between 1 and 5, rounded to two decimal places, with "
        "1 representing very poor quality and 5 representing excellent quality. First output the thinking process "
        "in <think> </think> tags and then output the final answer with only one score in <answer> </answer> tags."
    ),
    stem="",
    native_scale=(1.0, 5.0),
    answer_pattern=r"<answer>(.*?)</answer>",
    max_new_tokens=256,  # the card's budget
    template_options=(("add_vision_id", True),),  # the card's: Qwen2.5-VL's template writes "Picture 1:"
    trained_tasks=("mos",),
    source="https://github.com/TianheWu/VisualQuality-R1 (Quick Start)",
)

SPECS: dict[str, ReadoutSpec] = {spec.name: spec for spec in (VCRITIC, Q_REALIGN, VISUALQUALITY_R1)}
