"""The read-out tasks a user can ask for (``--tasks``, ``tasks=``) and the Questions behind each.

``mos`` is one question, ``attributes`` five (one per SPAQ attribute), ``authenticity`` one: seven numbers in all.
The order here is the order of the CSV columns.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from vcritic.errors import UsageError
from vcritic.readout.prompts import ATTRIBUTE_QUESTIONS, AUTHENTICITY_QUESTION, QUALITY, Question
from vcritic.readout.schema import DEFAULT_TASKS

TASKS: dict[str, tuple[Question, ...]] = {
    "mos": (QUALITY,),
    "attributes": tuple(ATTRIBUTE_QUESTIONS.values()),
    "authenticity": (AUTHENTICITY_QUESTION,),
}
ALL = "all"


def parse_tasks(spec: str | Iterable[str] | None, default: tuple[str, ...] = DEFAULT_TASKS) -> tuple[str, ...]:
    """``"mos,attributes"``, ``"all"``, ``"none"`` or a list of names -> task names in canonical order.

    ``"none"`` (or an empty list) asks for no read-out at all, which only ``describe`` accepts.
    """
    if spec is None:
        return default
    names = [part.strip().lower() for part in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [name for name in names if name]
    choices = f"choose from {', '.join([*TASKS, ALL])} (describe also takes none)"
    if not names and isinstance(spec, str):
        raise UsageError("--tasks is empty", hint=choices)
    if ALL in names:
        return tuple(TASKS)
    if names == ["none"]:
        return ()
    if "none" in names:
        raise UsageError("--tasks none cannot be combined with other tasks", hint=choices)
    for name in names:
        if name not in TASKS:
            close = difflib.get_close_matches(name, [*TASKS, ALL, "none"], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"unknown task {name!r}", hint=f"{hint}{choices}")
    return tuple(task for task in TASKS if task in names)


def task_questions(tasks: Iterable[str]) -> tuple[Question, ...]:
    """The Questions to read out for ``tasks`` (names from :func:`parse_tasks`), in column order."""
    return tuple(question for task in tasks for question in TASKS[task])
