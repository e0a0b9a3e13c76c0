"""``vcritic compare``: which of two images has better quality, or many pairs from a CSV in one model load."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer

from vcritic.cli._model import load_for_command
from vcritic.cli._options import (
    AdapterOpt,
    AllowPickleOpt,
    BatchSizeOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    RevisionOpt,
    TrustRemoteCodeOpt,
    WorkersOpt,
)
from vcritic.errors import VcriticError

EPILOG = (
    "P(A better) is read from the model's answer-word probabilities with the pair shown in both orders and "
    "averaged, so compare A B and compare B A always sum to 1. With --pairs, the CSV needs columns a and b "
    "(relative paths are taken from the CSV's folder); other columns are copied to the output, followed by "
    "p_a_better, better (a, b or tie) and error. Exit status: 0 done; 3 done, but some pairs have an error; "
    "1 nothing compared; 2 usage error."
)


def compare(
    image_a: Annotated[Path | None, typer.Argument(help="First image (A).", show_default=False)] = None,
    image_b: Annotated[Path | None, typer.Argument(help="Second image (B).", show_default=False)] = None,
    pairs: Annotated[
        Path | None,
        typer.Option("--pairs", help="CSV with columns a,b: compare every row in one model load.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="With --pairs: CSV file to write ('-' or leave out for stdout).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the output file if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result of A vs B as JSON.")] = False,
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    revision: RevisionOpt = None,
    batch_size: BatchSizeOpt = 8,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    trust_remote_code: TrustRemoteCodeOpt = False,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """Which of two images has better quality, with P(A better than B)."""
    from vcritic.cli._csv import check_output

    if pairs is not None:
        if image_a is not None or image_b is not None:
            raise VcriticError("give either two images or --pairs, not both")
        rows, fieldnames = read_pairs(pairs)
        check_output(output, overwrite)
    elif image_a is None or image_b is None:
        raise VcriticError("compare needs two images", hint="vcritic compare A B, or vcritic compare --pairs pairs.csv")
    elif output is not None:
        raise VcriticError("-o is for --pairs runs", hint="use --json for a machine-readable result of one pair")

    load = dict(adapter=adapter, revision=revision, device=device, dtype=dtype,
                trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)  # fmt: skip
    if pairs is not None:
        critic = load_for_command(model, **load)
        _compare_many(critic, rows, fieldnames, pairs.parent, output, batch_size, workers)
    else:
        _compare_one(model, load, image_a, image_b, as_json)


def verdict(p_a_better: float) -> str:
    # Probabilities come from a softmax; "tie" only when the model has no preference at all at 4 decimals.
    if abs(p_a_better - 0.5) < 5e-5:
        return "tie"
    return "a" if p_a_better > 0.5 else "b"


def _compare_one(model, load, image_a: Path, image_b: Path, as_json: bool) -> None:
    from vcritic.cli._output import stdout
    from vcritic.images import load_image
    from vcritic.scoring import describe_error

    images = []
    for label, path in (("A", image_a), ("B", image_b)):
        try:
            images.append(load_image(path))
        except Exception as err:
            raise VcriticError(f"cannot read image {label} ({path}): {describe_error(err)}") from None
    critic = load_for_command(model, **load)
    p = critic.compare(images[0], images[1]).p_a_better
    better = verdict(p)
    if as_json:
        result = {"a": str(image_a), "b": str(image_b), "p_a_better": round(p, 6), "better": better,
                  "model": critic.source}  # fmt: skip
        stdout.print(json.dumps(result), markup=False)
        return
    if better == "tie":
        stdout.print(f"No preference: P(A better than B) = {p:.4f}", markup=False)
    else:
        label, winner = ("A", image_a) if better == "a" else ("B", image_b)
        stdout.print(f"{label} is better ({winner}): P(A better than B) = {p:.4f}", markup=False)


def read_pairs(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of a pairs CSV (must have columns a and b) and its column names."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fieldnames = list(reader.fieldnames or [])
            rows = list(reader)
    except FileNotFoundError:
        raise VcriticError(f"pairs file not found: {path}", hint="check the path") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise VcriticError(
            f"cannot read pairs file {path}: {err}", hint="it must be a UTF-8 CSV with a header"
        ) from None
    missing = [column for column in ("a", "b") if column not in fieldnames]
    if missing:
        raise VcriticError(
            f"{path} has no column {' or '.join(missing)} (columns: {', '.join(fieldnames) or 'none'})",
            hint="the header must name the two image columns a and b",
        )
    if not rows:
        raise VcriticError(f"{path} has no pairs", hint="add rows with two image paths each")
    return rows, fieldnames


def _compare_many(critic, rows, fieldnames, base: Path, output, batch_size: int, workers) -> None:
    from vcritic.cli._csv import csv_output
    from vcritic.cli._output import make_progress, stderr
    from vcritic.scoring import compare_paths, format_number, resolve_relative

    extra = [name for name in ("p_a_better", "better", "error") if name not in fieldnames]
    pairs = [(resolve_relative(row["a"], base), resolve_relative(row["b"], base)) for row in rows]
    failed = 0
    with csv_output(output, fieldnames + extra) as writer, make_progress() as progress:
        task = progress.add_task("Comparing", total=len(rows), rate="")
        for row, result in zip(rows, compare_paths(critic, pairs, batch_size=batch_size, workers=workers),
                               strict=True):  # fmt: skip
            ok = result.p_a_better is not None
            failed += not ok
            writer.writerow({**row, "p_a_better": format_number(result.p_a_better), "error": result.error or "",
                             "better": verdict(result.p_a_better) if ok else ""})  # fmt: skip
            progress.update(task, advance=1)
    stderr.print(f"Compared {len(rows) - failed} of {len(rows)} pairs" + (f" -> {output}" if output else ""))
    if failed:
        stderr.print(f"[yellow]{failed} pair(s) could not be compared; see the error column.[/]")
        raise typer.Exit(3 if failed < len(rows) else 1)
