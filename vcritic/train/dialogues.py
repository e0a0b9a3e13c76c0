"""Training dialogues: what ``vcritic data`` writes and ``vcritic train`` reads, one JSON object per line.

A dialogue is one turn of the paper's unified format, ``Human: <img1>..</img1>(<img2>..</img2>)[Task]{instruction}
Assistant: {answer}``, stored by meaning rather than as rendered text, so each model family renders it with its own
chat template exactly as scoring does::

    {"question": "compare", "task": "relativity", "images": ["koniq10k/1024x768/1.jpg", "koniq10k/1024x768/2.jpg"],
     "instruction": "Which of the two images has better quality, the first or the second?",
     "answer": "The image with better quality is the first.", "dataset": "koniq10k"}

- ``question``: a name in :data:`vcritic.prompts.QUESTIONS`; it fixes the task identifier and, for read-out
  questions, the answer prefix that ``answer`` must start with (the part scoring puts in the prompt).
- ``task``: the batch group; every training batch holds one task (``relativity``, ``quality``, ``attributes``,
  ``authenticity``, ``description``, ``instruction``, ``decline``).
- ``images``: paths, relative to the JSONL file's folder unless absolute.
- ``instruction``: the user's words without the task identifier (one of the question's paraphrases, or free text
  for ``chat``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vcritic.errors import VcriticError
from vcritic.files import open_atomically

TASKS = ("relativity", "quality", "attributes", "authenticity", "description", "instruction", "decline")


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
    """Dialogues of a JSONL file; a line that does not parse is an error naming the file and line."""
    from vcritic.prompts import QUESTIONS

    try:
        handle = path.open(encoding="utf-8")
    except OSError as err:
        raise VcriticError(f"cannot read {path}: {err.strerror}", hint="build it with: vcritic data build") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise VcriticError(f"{where} is not valid JSON ({err.msg})", hint="rebuild the file") from None
            if not isinstance(record, dict):
                raise VcriticError(f"{where} is not a JSON object", hint="rebuild the file")
            missing = [k for k in ("question", "task", "images", "instruction", "answer") if k not in record]
            if missing:
                raise VcriticError(f"{where} has no {', '.join(missing)}", hint="rebuild the file")
            if record["question"] not in QUESTIONS:
                raise VcriticError(
                    f"{where}: unknown question {record['question']!r}", hint=f"known: {', '.join(QUESTIONS)}"
                )
            if record["task"] not in TASKS:
                raise VcriticError(f"{where}: unknown task {record['task']!r}", hint=f"known: {', '.join(TASKS)}")
            yield Dialogue(
                question=record["question"],
                task=record["task"],
                images=tuple(str(p) for p in record["images"]),
                instruction=str(record["instruction"]),
                answer=str(record["answer"]),
                dataset=str(record.get("dataset", "")),
                meta=dict(record.get("meta") or {}),
            )
