"""``vcritic data``: build training dialogues from rated datasets (``build``) or from the user's own pristine images
(``synth``). Both write a data folder (dialogues.jsonl, val.jsonl, data.json) that ``vcritic train --data`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(
    help="Build training dialogues: from rated IQA datasets (build) or from your own pristine images (synth).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

OutOpt = Annotated[
    Path,
    typer.Option("--out", "-o", help="Folder to write (dialogues.jsonl, val.jsonl, data.json).", show_default=False),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random draw: same seed, identical files.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Write into an existing, non-empty --out.")]
ValFractionOpt = Annotated[
    float,
    typer.Option(
        "--val-fraction",
        min=0.0,
        max=0.99,
        help="Share of training images (whole sources or references) held out for val.jsonl; 0: none.",
    ),
]

SYNTH_EPILOG = (
    "Distortions: blur, noise, jpeg, darken, brighten, contrast, saturation, downscale, at levels 1..N of "
    "increasing strength. Writes DIR/images/ (the pristine copies and every distorted version, PNG), "
    "DIR/manifest.csv (path,mos,ref_id,kind,level; synthetic MOS: pristine 100, level L of N 100*(1-L/(N+1))) "
    "which 'vcritic bench DIR/manifest.csv' reads, and stage-1 pairs only where the order is certain (same source "
    "and kind at two levels; pristine against any of its distortions), half of them with the better image first."
)


@data_app.command("synth", no_args_is_help=True, epilog=SYNTH_EPILOG)
def synth(
    src: Annotated[Path, typer.Argument(help="Folder of pristine images (searched recursively).", show_default=False)],
    out: OutOpt,
    levels: Annotated[int, typer.Option("--levels", min=2, max=20, help="Distortion levels per kind.")] = 5,
    kinds: Annotated[
        str | None,
        typer.Option("--kinds", help="Comma-separated distortions. Default: all eight.", show_default=False),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            "--size", min=8, help="Centre-crop each source to a square of N x N pixels first.", show_default=False
        ),
    ] = None,
    seed: SeedOpt = 0,
    val_fraction: ValFractionOpt = 0.02,
    overwrite: OverwriteOpt = False,
) -> None:
    """Distort your own pristine images at several levels and write stage-1 pairs whose order is certain."""
    from vcritic.cli._output import make_progress, stderr
    from vcritic.train.datadir import summary_table
    from vcritic.train.synth import parse_kinds, synthesize

    chosen = parse_kinds(kinds)
    with make_progress() as progress:
        task = progress.add_task("Distorting", total=None, rate="")

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        record = synthesize(
            src,
            out,
            levels=levels,
            kinds=chosen,
            size=size,
            seed=seed,
            val_fraction=val_fraction,
            overwrite=overwrite,
            progress=advance,
        )
    for line in record["skipped_files"]:
        stderr.print(f"[yellow]Skipped[/] {line}", markup=True, highlight=False)
    stderr.print(summary_table(record, f"Synthetic stage-1 pairs in {out}"))
    stderr.print(
        f"{record['synth']['sources']} sources, {record['images']} images in {record['seconds']:.1f} s"
        + (f", {len(record['skipped_files'])} unreadable skipped" if record["skipped_files"] else "")
        + f". Train with: vcritic train --stage 1 --data {out}; bench with: vcritic bench {out / 'manifest.csv'}",
        markup=False,
    )
