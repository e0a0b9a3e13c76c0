"""``vcritic chat``: a conversation with the critic about one image, typed on a terminal or scripted."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from vcritic.cli._options import json_flag, model_options
from vcritic.inference.chat import DEFAULT_MAX_NEW_TOKENS
from vcritic.inference.model_spec import ModelSpec

COMMANDS = ("/score", "/reset", "/quit")

EPILOG = (
    "On a terminal: type a question and the answer streams as it is written; the earlier questions and answers stay "
    "in the conversation. /score prints the image's numbers as vcritic score reads them (MOS and attributes 0-100, "
    "higher = more; P(AI-generated) 0-1), /reset forgets the conversation (the image stays encoded), /quit or "
    "Ctrl-D ends (exit 0), Ctrl-C stops (exit 130). Scripted: --ask (repeatable), else one question per line on "
    "stdin when it is not a terminal; the same commands work there. Answers go to stdout, one after another, each "
    "question to stderr; --json prints one object at the end instead: image, model, turns [{question, answer}], and "
    "score (mos, mos_std, attributes, p_ai_generated) after /score. Decoding is greedy, so the same image, model "
    "and questions give the same answers; --temperature samples."
)


def _positive(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not above 0 (leave it out for greedy decoding)")
    return value


JsonOpt = json_flag("Print the transcript as one JSON object at the end, no streaming.")


# One image at a time, generated text: no batches, and generation is not done in fixed shapes.
@model_options(without=("batch_size", "workers", "reproducible"))
def chat(
    image: Annotated[Path, typer.Argument(help="The image to talk about.", show_default=False)],
    ask: Annotated[
        list[str] | None,
        typer.Option(
            "--ask",
            "-a",
            help="A question; repeat it for more turns, answered in order. Default: one question per line from "
            "stdin, or typed on a terminal.",
            metavar="<text>",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Longest answer, in tokens.")
    ] = DEFAULT_MAX_NEW_TOKENS,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            callback=_positive,
            help="Sample the answers at this temperature (with the model's own top-k/top-p). Default: greedy.",
            show_default=False,
        ),
    ] = None,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """Ask the critic about the quality of one image, in a conversation (follow-up questions keep the context)."""
    from vcritic.pipeline.distributed import single_process_only

    single_process_only("chat")
    from vcritic.base.images import UnreadableImageError, load_image
    from vcritic.cli._model import load_for_command
    from vcritic.cli._output import stderr
    from vcritic.errors import VcriticError

    try:  # before the model: a wrong path should not cost a model load
        picture = load_image(image)
    except UnreadableImageError as err:
        raise VcriticError(f"cannot use {image}: {err.message}", hint="give the path of an image file") from None
    interactive = not ask and sys.stdin.isatty()
    critic = load_for_command(spec)
    conversation = critic.chat(picture, max_new_tokens=max_new_tokens, temperature=temperature)
    transcript: dict = {"image": str(image), "model": critic.loaded.name, "turns": []}
    if interactive:
        stderr.print(f"Talking about {image} with {critic.loaded}.", markup=False)
        stderr.print(f"Commands: {', '.join(COMMANDS)}; Ctrl-D ends.", markup=False)
    try:
        _converse(conversation, _lines(ask, interactive), transcript, as_json=as_json, interactive=interactive)
    finally:
        if as_json:  # also on Ctrl-C: the turns answered so far are not lost
            _print_json(transcript)


def _converse(conversation, lines: Iterator[str], transcript: dict, *, as_json: bool, interactive: bool) -> None:
    from vcritic.cli._answers import readout_line, score_dict, text_streamer
    from vcritic.cli._output import stderr, stdout

    streamer = None if as_json else text_streamer(conversation.critic.tokenizer)
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command = text.lower()
            if command == "/quit":
                return
            if command == "/reset":
                conversation.reset()
                stderr.print("The conversation starts again.", markup=False)
            elif command == "/score":
                score = conversation.score()
                if as_json:
                    transcript["score"] = score_dict(score)
                else:
                    stdout.print(readout_line(score), markup=False)
            else:
                stderr.print(f"Unknown command {text}; commands: {', '.join(COMMANDS)}.", markup=False)
            continue
        if not interactive and not as_json:
            stderr.print(f"> {text}", markup=False)  # which answer belongs to which question
        answer = conversation.ask(text, streamer=streamer)
        transcript["turns"].append({"question": text, "answer": answer})
        if as_json and interactive:  # stdout holds the transcript for the end; the person typing reads stderr
            stderr.print(answer, markup=False)


def _lines(ask: list[str] | None, interactive: bool) -> Iterator[str]:
    """The questions and commands: --ask, else typed (with a prompt on stderr), else stdin's lines as they come."""
    if ask:
        yield from ask
    elif interactive:
        from vcritic.cli._output import stderr

        while True:
            stderr.print("> ", end="", markup=False)
            try:
                yield input()
            except EOFError:  # Ctrl-D
                stderr.print()
                return
            except KeyboardInterrupt:  # the shell prompt that follows (exit 130) starts on a line of its own
                stderr.print()
                raise
    else:
        yield from sys.stdin


def _print_json(transcript: dict) -> None:
    from vcritic.cli._output import stdout

    stdout.print(json.dumps(transcript), markup=False)
