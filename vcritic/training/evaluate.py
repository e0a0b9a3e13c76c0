"""Periodic evaluation on held-out dialogues (``val.jsonl``), read out exactly as ``compare`` and ``score`` do."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vcritic.data.dialogues import Dialogue
from vcritic.readout.prompts import COMPARE, QUALITY


def evaluation_sample(dialogues: Sequence[Dialogue], n: int) -> list[Dialogue]:
    """At most ``n`` dialogues, taken in turn from each task (in file order within a task), so that a task written
    late in ``val.jsonl`` (stage 3's declines) is evaluated too."""
    by_task: dict[str, list[Dialogue]] = {}
    for dialogue in dialogues:
        by_task.setdefault(dialogue.task, []).append(dialogue)
    chosen: list[Dialogue] = []
    for i in range(max((len(group) for group in by_task.values()), default=0)):
        chosen += [group[i] for group in by_task.values() if i < len(group)]
    return chosen[:n]


def evaluate(critic, dialogues: Sequence[Dialogue], root: Path, batch_size: int = 8) -> dict[str, float]:
    """Pair accuracy on relativity dialogues; SRCC on quality dialogues whose meta has the MOS; the decline rate on
    off-topic requests (``decline`` dialogues)."""
    from vcritic.base.images import load_image
    from vcritic.evaluation.metrics import pair_accuracy, srcc

    def path(name: str) -> Path:
        return Path(name) if Path(name).is_absolute() else root / name

    results: dict[str, float] = {}
    pairs = [d for d in dialogues if d.question == COMPARE.name and len(d.images) == 2]
    if pairs:
        images = [(load_image(path(d.images[0])), load_image(path(d.images[1]))) for d in pairs]
        p_first = [c.p_a_better for c in critic.compare(images, batch_size=batch_size)]
        first_better = [d.answer == COMPARE.answer(" first") for d in pairs]
        results["pair_accuracy"] = pair_accuracy(p_first, first_better)
        results["pairs"] = len(pairs)
    rated = [d for d in dialogues if d.question == QUALITY.name and "mos" in d.meta]
    if len(rated) >= 3:
        scores = critic.score([load_image(path(d.images[0])) for d in rated], batch_size=batch_size)
        results["srcc"] = srcc([s.mos for s in scores], [float(d.meta["mos"]) for d in rated])
        results["rated"] = len(rated)
    declines = [d for d in dialogues if d.task == "decline"]
    if declines:
        results["decline_rate"] = decline_rate(critic, declines, path, batch_size)
        results["declines"] = len(declines)
    return results


def decline_rate(critic, dialogues: Sequence[Dialogue], path, batch_size: int = 8) -> float:
    """Share of off-topic requests the model answers by starting a refusal: its greedy first reply token is the
    first token of one of the refusals it was taught (:data:`~vcritic.data.dialogues.DECLINES`, and the held-out
    answers). One forward pass per batch, no generation; a first token such as "I" is shared with other replies,
    so this is an upper bound on refusing, and a drop from 1.0 means the model stopped declining. Batches go through
    the batch engine (:func:`vcritic.engine.batches.in_batches`), like ``score`` and ``compare`` above."""
    from vcritic.base.images import load_image
    from vcritic.data.dialogues import DECLINES
    from vcritic.engine.batches import in_batches
    from vcritic.readout.prompts import get_question
    from vcritic.training.collate import answer_tokens

    openers = set()
    for dialogue in dialogues:
        prefix = get_question(dialogue.question).answer_prefix
        for refusal in (*DECLINES, dialogue.answer):
            openers.add(answer_tokens(critic.tokenizer, prefix, refusal)[0])

    def launch(chunk: Sequence[Dialogue]):
        items = [
            critic.encoder.encode(get_question(d.question), [load_image(path(d.images[0]))], d.instruction)
            for d in chunk
        ]
        return critic.last_logits(critic.encoder.collate(items)).argmax(dim=-1)  # the greedy first reply token

    def finish(first) -> list[int]:
        return first.tolist()

    first_tokens = in_batches(list(dialogues), batch_size, launch, finish, critic.device)
    return sum(token in openers for token in first_tokens) / len(dialogues)
