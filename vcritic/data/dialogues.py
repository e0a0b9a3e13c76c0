"""Training dialogues: what ``vcritic data`` writes and ``vcritic train`` reads, one JSON object per line.

A dialogue is one turn of the paper's unified format, ``Human: <img1>..</img1>(<img2>..</img2>)[Task]{instruction}
Assistant: {answer}``, stored by meaning rather than as rendered text, so each model family renders it with its own
chat template exactly as scoring does::

    {"question": "compare", "task": "relativity", "images": ["koniq10k/1024x768/1.jpg", "koniq10k/1024x768/2.jpg"],
     "instruction": "Which of the two images has better quality, the first or the second?",
     "answer": "The image with better quality is the first.", "dataset": "koniq10k"}

- ``question``: a name in :data:`vcritic.readout.prompts.QUESTIONS`; it fixes the task identifier and, for read-out
  questions, the answer prefix that ``answer`` must start with (the part scoring puts in the prompt).
- ``task``: the batch group; every training batch holds one task (``relativity``, ``quality``, ``attributes``,
  ``authenticity``, ``description``, ``instruction``, ``decline``).
- ``images``: paths, relative to the JSONL file's folder unless absolute.
- ``instruction``: the user's words without the task identifier (one of the question's paraphrases, or free text
  for ``chat``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vcritic.base.files import open_atomically
from vcritic.errors import VcriticError

DIALOGUE_TASKS = ("relativity", "quality", "attributes", "authenticity", "description", "instruction", "decline")
# The refusals a ``decline`` dialogue answers with: stage 3 teaches them (vcritic.data.instruct), and training's
# decline rate looks for them (vcritic.training.evaluate).
DECLINES = (
    "I'm sorry, but I can only help with questions about the visual quality of images.",
    "That is outside what I can help with: I assess image quality. Ask me how good this image looks instead.",
    "I can't answer that. I am an image quality assistant; I can rate or describe the quality of this picture.",
    "Sorry, that question is not about image quality, so I will not answer it. I can evaluate this image for you.",
)
REQUIRED = ("question", "task", "images", "instruction", "answer")

# Bounds on what a dialogue file may hold, checked as it is read. The paper's longest texts (LLaVA-Instruct answers,
# image descriptions) are a few thousand characters; a 5 MB instruction once took 6 GB of memory and then tried a
# 61 GB allocation in the model. Tokens are bounded again when a dialogue is encoded (vcritic.training.collate).
MAX_TEXT_CHARS = 16_000  # instruction, answer
MAX_NAME_CHARS = 4_096  # an image path, the dataset name
MAX_LINE_BYTES = 1 << 20  # one JSONL line
MAX_FILE_BYTES = 4 << 30  # a dialogues.jsonl (held in memory as a list of dialogues)


@dataclass(frozen=True)
class Dialogue:
    question: str
    task: str
    images: tuple[str, ...]
    instruction: str
    answer: str
    dataset: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. the MOS values a pair was labelled from

    def to_json(self) -> str:
        record = asdict(self)
        record["images"] = list(self.images)
        if not record["meta"]:
            del record["meta"]
        return json.dumps(record, ensure_ascii=False)


def write_dialogues(path: Path, dialogues: Iterable[Dialogue]) -> int:
    """Write ``dialogues`` as JSONL (atomically: a partial file never has the final name); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open_atomically(path, newline="\n") as handle:
        for dialogue in dialogues:
            handle.write(dialogue.to_json() + "\n")
            count += 1
    return count


def read_dialogues(path: Path) -> Iterator[Dialogue]:
    """Dialogues of a JSONL file, every field checked (type and size, :func:`check_record`) as it is read: a bad line
    is an error naming the file and line, before any model work."""
    try:
        handle = path.open("rb")
        size = os.fstat(handle.fileno()).st_size
    except OSError as err:
        raise VcriticError(f"cannot read {path}: {err.strerror}", hint="build it with: vcritic data build") from None
    with handle:
        if size > MAX_FILE_BYTES:
            raise VcriticError(
                f"{path} is {size / 2**30:.1f} GiB, over the {MAX_FILE_BYTES / 2**30:g} GiB a dialogue file may be",
                hint="split the data, or check that this is the file you meant",
            )
        number = 0
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)  # bounded: a file without line breaks is not read whole
            if not raw:
                return
            number += 1
            where = f"{path}, line {number}"
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise VcriticError(
                    f"{where} is longer than {MAX_LINE_BYTES // 2**10} KiB",
                    hint=f"a dialogue is one JSON line; its instruction and answer are at most {MAX_TEXT_CHARS:,} "
                    "characters each",
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise VcriticError(f"{where} is not UTF-8 text", hint="rebuild the file") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as err:
                reason = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
                raise VcriticError(f"{where} is not valid JSON ({reason})", hint="rebuild the file") from None
            yield check_record(record, where)


def check_record(record: Any, where: str) -> Dialogue:
    """One parsed JSONL line as a :class:`Dialogue`, or a :class:`VcriticError` naming ``where`` and the field:
    every field has its type (strings are strings, never ``null`` or a number), text stays under
    :data:`MAX_TEXT_CHARS`, and ``images`` holds exactly as many paths as the question shows."""
    from vcritic.readout.prompts import QUESTIONS

    hint = "rebuild the file with: vcritic data build"
    if not isinstance(record, dict):
        raise VcriticError(f"{where} is not a JSON object", hint=hint)
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise VcriticError(f"{where} has no {', '.join(missing)}", hint=hint)
    for key in (*REQUIRED, "dataset"):
        value = record.get(key, "")
        wanted = list if key == "images" else str
        if not isinstance(value, wanted):
            raise VcriticError(
                f"{where}: {key!r} is {_json_type(value)}, not {'a list' if wanted is list else 'a string'}", hint=hint
            )
    if record["question"] not in QUESTIONS:
        raise VcriticError(f"{where}: unknown question {record['question']!r}", hint=f"known: {', '.join(QUESTIONS)}")
    if record["task"] not in DIALOGUE_TASKS:
        raise VcriticError(f"{where}: unknown task {record['task']!r}", hint=f"known: {', '.join(DIALOGUE_TASKS)}")
    for key, limit in (("instruction", MAX_TEXT_CHARS), ("answer", MAX_TEXT_CHARS), ("dataset", MAX_NAME_CHARS)):
        if len(record.get(key, "")) > limit:
            raise VcriticError(
                f"{where}: {key!r} is {len(record[key]):,} characters, over the {limit:,} allowed", hint=hint
            )
    question = QUESTIONS[record["question"]]
    images = record["images"]
    if len(images) != question.n_images:
        raise VcriticError(
            f"{where}: {len(images)} image(s) for a {question.name!r} question, which shows {question.n_images}",
            hint=hint,
        )
    for image in images:
        if not isinstance(image, str) or not image.strip() or len(image) > MAX_NAME_CHARS or "\0" in image:
            shown = repr(image)[:60]
            raise VcriticError(f"{where}: image {shown} is not a file path", hint=hint)
    if not record["answer"].startswith(question.answer_prefix):
        raise VcriticError(
            f"{where}: a {question.name!r} answer must start with {question.answer_prefix!r}, not "
            f"{record['answer'][:60]!r}",
            hint=hint,
        )
    meta = record.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise VcriticError(f"{where}: 'meta' is {_json_type(meta)}, not an object", hint=hint)
    return Dialogue(
        question=record["question"],
        task=record["task"],
        images=tuple(images),
        instruction=record["instruction"],
        answer=record["answer"],
        dataset=record.get("dataset", ""),
        meta=dict(meta or {}),
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)
