"""Every prompt vcritic sends, in the paper's unified dialogue form.

VisualCritic trains on ``Human: <img1>{image}</img1>(<img2>{image}</img2>)[TaskIdentifier]{instruction}
Assistant: {answer}``. A :class:`Question` holds one such task: the identifier, the instruction (the first of its
paraphrases is the canonical one used for scoring; training samples the rest), the start of the answer up to the
word the readout looks at, and the answer words with the value each stands for. New assessments (the five
attributes, authenticity) are new entries in :data:`QUESTIONS`, not new code.

Prompts are rendered through the processor's own chat template so every model family gets its native format;
processors that have none (BLIP-2/InstructBLIP drop theirs on reload) get the paper's Vicuna-style format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vcritic.errors import VcriticError
from vcritic.readout.schema import ATTRIBUTES

# Task identifiers from the paper (Sec. 3.2).
IQA_QUANT = "<IQA_QUANT>"
IQA_DES = "<IQA_DES>"
AUTHENTICITY = "<AUTHENTICITY>"

# The five rating levels (ITU-R BT.500 wording, as in Q-Align) and the 0-100 value each stands for. The readout is
# the probability-weighted mean of these values, so MOS is on a 0-100 scale, higher is better.
LEVELS: tuple[tuple[str, float], ...] = (
    (" excellent", 100.0),
    (" good", 75.0),
    (" fair", 50.0),
    (" poor", 25.0),
    (" bad", 0.0),
)


@dataclass(frozen=True)
class Question:
    """One assessment task: what is asked, and which answer words are read out at the answer position."""

    name: str
    task: str  # task identifier, "" for none (relativity data has none in the paper)
    instructions: tuple[str, ...]  # paraphrases; [0] is canonical and used for scoring
    answer_prefix: str  # the answer up to (not including) the read-out word
    choices: tuple[tuple[str, float], ...]  # (answer word with its leading space, value)
    n_images: int = 1
    # How the answer prefix joins the generation prompt: None, a space unless the template ends in whitespace;
    # otherwise this string (a judge's card may append its stem as is). See vcritic.model.judges.
    stem_separator: str | None = None
    readout: str = "vcritic"  # the vcritic.model.judges read-out this question belongs to
    generates: bool = False  # answered by generating text and parsing a number (a reasoning judge), not read out
    template_options: tuple[tuple[str, object], ...] = ()  # extra apply_chat_template arguments of the card

    @property
    def instruction(self) -> str:
        return self.instructions[0]

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(word for word, _ in self.choices)

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(value for _, value in self.choices)

    def answer(self, word: str) -> str:
        """The full training answer for one of the choices (used to build dialogue data)."""
        return f"{self.answer_prefix}{word}."


QUALITY = Question(
    name="quality",
    task=IQA_QUANT,
    instructions=(
        "How would you rate the overall quality of this image?",
        "Rate the perceptual quality of this image.",
        "What is your assessment of this image's visual quality?",
        "Evaluate the quality of the image.",
    ),
    answer_prefix="The quality of this image is",
    choices=LEVELS,
)

COMPARE = Question(
    name="compare",
    task="",
    instructions=(
        "Which of the two images has better quality, the first or the second?",
        "Compare the perceptual quality of the two images. Which one is better?",
        "Of these two pictures, which has the higher visual quality?",
    ),
    answer_prefix="The image with better quality is the",
    choices=((" first", 1.0), (" second", 0.0)),
    n_images=2,
)

# Families whose processor takes one image per prompt (BLIP-2, InstructBLIP) see a pair as one side-by-side
# picture: the first image on the left.
COMPARE_SIDE_BY_SIDE = Question(
    name="compare_side_by_side",
    task="",
    instructions=(
        "This picture shows two images side by side: the first on the left, the second on the right. "
        "Which of the two has better quality, the first or the second?",
    ),
    answer_prefix=COMPARE.answer_prefix,
    choices=COMPARE.choices,
    n_images=1,
)

# The five attribute indicators (SPAQ's ground truth, names from vcritic.datasets), read out with the same level
# words as MOS, so each is on a 0-100 scale too: higher means SPAQ's raters would rate that attribute higher.


def _attribute_question(attribute: str) -> Question:
    return Question(
        name=attribute,
        task=IQA_QUANT,
        instructions=(
            f"How would you rate the {attribute} of this image?",
            f"Rate the {attribute} of this image.",
            f"What is your assessment of this image's {attribute}?",
            f"Evaluate the {attribute} of the image.",
        ),
        answer_prefix=f"The {attribute} of this image is",
        choices=LEVELS,
    )


ATTRIBUTE_QUESTIONS: dict[str, Question] = {name: _attribute_question(name) for name in ATTRIBUTES}

# Authenticity (paper: photographic = 1, AI-generated = 0). The readout's value is P(AI-generated), so the
# expectation over the two words is that probability directly.
AUTHENTICITY_QUESTION = Question(
    name="authenticity",
    task=AUTHENTICITY,
    instructions=(
        "Was this image taken with a camera or generated by AI?",
        "Is this a real photograph or an AI-generated image?",
        "Tell whether this picture was photographed or generated by a model.",
        "Determine the authenticity of this image.",
    ),
    answer_prefix="This image was",
    choices=((" photographed", 0.0), (" generated", 1.0)),
)

# Qualitative evaluation: free text, generated rather than read out, so it has no answer words.
DESCRIBE = Question(
    name="describe",
    task=IQA_DES,
    instructions=(
        "Describe the quality of this image.",
        "Explain the visual quality of this image in a few sentences.",
        "What do you think of the quality of this picture? Give your reasons.",
        "Give a short assessment of this image's quality, mentioning its strengths and flaws.",
    ),
    answer_prefix="",
    choices=(),
)

# General instruction following (stage 3: LLaVA-Instruct, CC-SBU-Aligned, declining off-topic requests): the
# instruction comes with each dialogue, the placeholder below is never asked.
CHAT = Question(
    name="chat",
    task="",
    instructions=("Describe this image.",),
    answer_prefix="",
    choices=(),
)

QUESTIONS: dict[str, Question] = {
    q.name: q
    for q in (
        QUALITY,
        COMPARE,
        COMPARE_SIDE_BY_SIDE,
        *ATTRIBUTE_QUESTIONS.values(),
        AUTHENTICITY_QUESTION,
        DESCRIBE,
        CHAT,
    )
}


def get_question(name: str) -> Question:
    try:
        return QUESTIONS[name]
    except KeyError:
        raise VcriticError(f"unknown question {name!r}", hint=f"known: {', '.join(QUESTIONS)}") from None


def user_text(question: Question, instruction: str | None = None) -> str:
    """The user's words: task identifier, then the instruction."""
    text = instruction or question.instruction
    return f"{question.task} {text}" if question.task else text


def render_prompt(
    processor,
    question: Question,
    *,
    image_placeholder: str | None,
    instruction: str | None = None,
    history: Sequence[tuple[str, str]] = (),
) -> str:
    """The full prompt text up to the read-out word.

    ``image_placeholder`` is the processor's image token where images are placed in the text (LLaVA, Qwen-VL, ...)
    or ``None`` for families whose processor puts the image tokens in front by itself (BLIP-2, InstructBLIP).
    ``history``: the earlier (user words, answer) exchanges of a conversation (``vcritic chat``), rendered as the
    template renders them; the images go with the first user message, so without history this is the one-turn
    prompt that scoring asks and training teaches.
    """
    turns = [*history, (user_text(question, instruction), None)]
    if getattr(processor, "chat_template", None):
        messages = []
        for i, (words, answer) in enumerate(turns):
            images = [{"type": "image"} for _ in range(question.n_images if i == 0 else 0)]
            messages.append({"role": "user", "content": [*images, {"type": "text", "text": words}]})
            if answer is not None:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        options = dict(question.template_options)
        if question.readout == "vcritic":
            # vcritic's own prompts ask for a direct answer: templates that think by default (Qwen3.5) then close an
            # empty "<think>" block. A judge's card decides for itself (its template_options, e.g. Q-ReAlign's none).
            options.setdefault("enable_thinking", False)
        # Options go only to templates that read them: others would pass them on to the processor, with a warning.
        options = {key: value for key, value in options.items() if key in str(processor.chat_template)}
        rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **options)
        # Templates that end the assistant header with "ASSISTANT:" expect the answer after a space.
        separator = question.stem_separator
        if separator is None:
            separator = "" if rendered[-1:].isspace() else " "
        return rendered + separator + question.answer_prefix
    # The paper's format has no multi-turn form; an answer ends with EOS, as training teaches it.
    end = getattr(getattr(processor, "tokenizer", processor), "eos_token", None) or "\n"
    text = "".join(
        vicuna_prompt(words, question.n_images if i == 0 else 0, image_placeholder)
        + (f"{answer}{end}" if answer is not None else "")
        for i, (words, answer) in enumerate(turns)
    )
    return text + question.answer_prefix


def vicuna_prompt(text: str, n_images: int, image_placeholder: str | None) -> str:
    """The paper's own format: ``Human: <img1>{image}</img1>[Task]{instruction} Assistant: ``."""
    images = "".join(f"<img{i}>{image_placeholder or ''}</img{i}>" for i in range(1, n_images + 1))
    return f"Human: {images}{text} Assistant: "
