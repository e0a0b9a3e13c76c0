"""``vcritic describe``: the model's written quality assessment of each image, streamed as it is generated."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vcritic.cli._answers import readout_line, score_dict, text_streamer
from vcritic.cli._exit import EXIT_PARTIAL
from vcritic.cli._options import json_flag, model_options
from vcritic.inference.model_spec import ModelSpec

EPILOG = (
    "Text output: per image, its path, the assessment as the model writes it, then the numbers read out "
    "(MOS and attributes 0-100, higher = more; P(AI-generated) 0-1). --json: one JSON object per line and image: "
    "path, text, mos, mos_std, attributes, p_ai_generated (those asked for with --tasks), error. Decoding is "
    "greedy, so the same image and model give the same text. The numbers come from the answer-word probabilities "
    "as in vcritic score, not from the text. Exit status: 0 done; 3 done, but some images could not be read; "
    "1 nothing described; 2 usage error."
)

DescribeTasksOpt = Annotated[
    str,
    typer.Option(
        "--tasks",
        "-t",
        help="Numbers to read out beside the text, comma-separated: mos, attributes, authenticity, all or none.",
    ),
]


JsonOpt = json_flag("One JSON object per image on stdout, no streaming.")


# One image at a time, generated text: no batches, and generation is not done in fixed shapes.
@model_options(without=("batch_size", "workers", "reproducible"))
def describe(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    as_json: JsonOpt = False,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Longest description, in tokens.")
    ] = 160,
    tasks: DescribeTasksOpt = "all",
    spec: ModelSpec = ModelSpec(),
) -> None:
    """Explain the quality of each image in words (the paper's qualitative evaluation), with its scores."""
    from vcritic.pipeline.distributed import single_process_only

    single_process_only("describe")
    from vcritic.base.images import load_image, require_images, unsearched_note
    from vcritic.cli._model import load_for_command
    from vcritic.cli._output import stderr, stdout
    from vcritic.pipeline.scoring import describe_error
    from vcritic.readout.tasks import parse_tasks

    wanted = parse_tasks(tasks)
    unsearched: list = []  # (folder, reason) the walk did not search
    paths = require_images(inputs, unsearched=unsearched)
    critic = load_for_command(spec)
    from vcritic.model.judges import untrained_note

    note = untrained_note(critic.judge, wanted, critic.source)
    if note:
        stderr.print(note, style="yellow", markup=False)
    streamer = None if as_json else text_streamer(critic.tokenizer)
    failed = 0
    for path in paths:
        try:
            image = load_image(path)
        except Exception as err:  # a bad file is reported and skipped, the others are still described
            failed += 1
            reason = describe_error(err)
            if as_json:
                stdout.print(json.dumps({"path": str(path), "text": None, "error": reason}), markup=False)
            else:
                stderr.print(f"[yellow]{path}: {reason}[/]")
            continue
        if not as_json:
            stdout.print(f"{path}:", markup=False)
        result = critic.describe(image, tasks=wanted, max_new_tokens=max_new_tokens, streamer=streamer)
        if as_json:
            stdout.print(json.dumps(_as_dict(str(path), result)), markup=False)
        elif result.score is not None:
            stdout.print(readout_line(result.score), markup=False)
    if unsearched:
        stderr.print(unsearched_note(unsearched), markup=False)
    if failed:
        stderr.print(f"[yellow]{failed} file(s) could not be described.[/]")
        raise typer.Exit(EXIT_PARTIAL if failed < len(paths) else 1)


def _as_dict(path: str, result) -> dict:
    out = {"path": path, "text": result.text}
    if result.score is not None:
        out.update(score_dict(result.score))
    out["error"] = None
    return out
