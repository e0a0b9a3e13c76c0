"""``vcritic data``: build training dialogues from rated datasets (``build``) or from the user's own pristine images
(``synth``). Both write a data folder (dialogues.jsonl, val.jsonl, data.json) that ``vcritic train --data`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcritic.cli._help import Command, Group

data_app = typer.Typer(
    help="Build training dialogues: from rated IQA datasets (build) or from your own pristine images (synth).",
    no_args_is_help=True,
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},
)

OutOpt = Annotated[
    Path,
    typer.Option("--out", "-o", help="Folder to write (dialogues.jsonl, val.jsonl, data.json).", show_default=False),
]
SeedOpt = Annotated[
    int,
    typer.Option("--seed", min=0, max=2**32 - 1, help="Seed for every random draw: same seed, identical files."),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Write into an existing, non-empty --out, removing what an earlier vcritic data run wrote there "
        "(dialogues, data.json, a synth manifest.csv and the images it lists); other files are left alone.",
    ),
]
ValFractionOpt = Annotated[
    float,
    typer.Option(
        "--val-fraction",
        min=0.0,
        max=0.99,
        help="Share of training images (whole sources or references) held out for val.jsonl; 0: none.",
    ),
]

BUILD_EPILOG = (
    "Training-split images only (the paper's seeded 80/20 split as 'vcritic bench' uses it, KADID-10k by "
    "reference, and never KonIQ-10k's official test set). Stage 1: relativity pairs within each of KonIQ-10k, SPAQ, "
    "FLIVE, LIVEC, CGIQA-6K, AGIQA-3k, KADID-10k (those under --root), skipping pairs whose MOS gap is within "
    "rating noise (0.25*sqrt(sd1^2+sd2^2) where the file has per-image SD, else 5 points of 0-100). Stage 2: MOS "
    "(KonIQ-10k), the five attributes (SPAQ), authenticity (KonIQ-10k vs AIGCIQA-2023, balanced), template "
    "descriptions. Stage 3: a sample of stage 1-2 dialogues per task (--from built folders, or rebuilt from "
    "--root), --instruct data (LLaVA-Instruct or CC-SBU-Aligned JSON) and off-topic questions answered with a "
    "polite decline. Unreadable images are skipped and counted."
)

SYNTH_EPILOG = (
    "Distortions: blur, noise, jpeg, darken, brighten, contrast, saturation, downscale, at levels 1..N of "
    "increasing strength. Writes DIR/images/ (the pristine copies and every distorted version, PNG), "
    "DIR/manifest.csv (path,mos,ref_id,kind,level; synthetic MOS: pristine 100, level L of N 100*(1-L/(N+1))) "
    "which 'vcritic bench DIR/manifest.csv' reads, and stage-1 pairs only where the order is certain (same source "
    "and kind at two levels; pristine against any of its distortions), half of them with the better image first."
)


def _names(text: str | None, flag: str) -> list[str] | None:
    """A comma-separated option's names; None when the option was not given. Given but empty is a mistake (it
    would read as "not given": every dataset)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        from vcritic.errors import UsageError

        raise UsageError(f"{flag} is empty", hint=f"name at least one, or leave {flag} out")
    return names


def _say_removed(record: dict) -> None:
    if record.get("removed"):
        from vcritic.cli._output import stderr

        stderr.print(f"Removed {record['removed']} file(s) an earlier run wrote that this one did not", markup=False)


@data_app.command("build", no_args_is_help=True, epilog=BUILD_EPILOG, cls=Command)
def build(
    stage: Annotated[int, typer.Option("--stage", min=1, max=3, help="Curriculum stage: 1, 2 or 3.")],
    out: OutOpt,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Folder with the datasets, each under its name (koniq10k/, spaq/, ...). Default: $VCRITIC_DATA, "
            "else the datasets/ folder in vcritic's home (as for bench).",
            show_default=False,
        ),
    ] = None,
    datasets: Annotated[
        str | None,
        typer.Option(
            "--datasets",
            help="Comma-separated datasets. Default: the stage's datasets found under --root; one asked for "
            "but missing is an error.",
            show_default=False,
        ),
    ] = None,
    pairs_per_dataset: Annotated[
        int, typer.Option("--pairs-per-dataset", min=2, help="Stage 1: pairs drawn from each dataset (at most).")
    ] = 10_000,
    sources: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Stage 3: comma-separated folders built by 'vcritic data build/synth' to sample from.",
            show_default=False,
        ),
    ] = None,
    instruct: Annotated[
        list[Path] | None,
        typer.Option(
            "--instruct",
            help="Stage 3: instruction data, LLaVA-Instruct or CC-SBU-Aligned JSON (repeat for several).",
            metavar="<path>",
            show_default=False,
        ),
    ] = None,
    instruct_images: Annotated[
        list[Path] | None,
        typer.Option(
            "--instruct-images",
            help="Folder with the --instruct images: once for all files, or once per --instruct, in order. "
            "Default: each JSON file's folder.",
            metavar="<path>",
            show_default=False,
        ),
    ] = None,
    samples_per_task: Annotated[
        int, typer.Option("--samples-per-task", min=1, help="Stage 3: stage 1-2 dialogues kept per task (at most).")
    ] = 1000,
    declines: Annotated[
        int | None,
        typer.Option(
            "--declines",
            min=0,
            help="Stage 3: decline dialogues. Default: 5% of the rest. val.jsonl gets the same share, on held-out "
            "images.",
            show_default=False,
        ),
    ] = None,
    rewrite_endpoint: Annotated[
        str | None,
        typer.Option(
            "--rewrite-endpoint",
            help="Stages 2-3: an OpenAI-compatible server (e.g. http://localhost:8000/v1) that rewrites the template "
            "descriptions; answers are cached, reruns never ask again. Key: env VCRITIC_REWRITE_API_KEY.",
            show_default=False,
        ),
    ] = None,
    rewrite_model: Annotated[
        str | None,
        typer.Option("--rewrite-model", help="The model name to ask at --rewrite-endpoint.", show_default=False),
    ] = None,
    seed: SeedOpt = 0,
    val_fraction: ValFractionOpt = 0.02,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write one curriculum stage's training dialogues from the training splits of rated IQA datasets."""
    from vcritic.cli._output import stderr
    from vcritic.data.build import BuildOptions
    from vcritic.data.build import build as build_stage
    from vcritic.data.datadir import summary_table

    if root is None and not sources:  # stage 3 from built folders needs no datasets
        from vcritic.base.home import data_root
        from vcritic.errors import VcriticError

        root = data_root()
        if not root.is_dir():
            raise VcriticError(
                f"no --root given and no datasets folder at {root} (the default: $VCRITIC_DATA, else the datasets/ "
                "folder in vcritic's home)",
                hint="pass --root with the folder holding the datasets"
                + (", or --from DIR,... with folders built earlier" if stage == 3 else ""),
            )
    options = BuildOptions(
        stage=stage,
        out=out,
        root=root,
        datasets=_names(datasets, "--datasets"),
        seed=seed,
        pairs_per_dataset=pairs_per_dataset,
        val_fraction=val_fraction,
        overwrite=overwrite,
        sources=[Path(p) for p in _names(sources, "--from") or []],
        instruct=list(instruct or []),
        instruct_images=list(instruct_images or []),
        samples_per_task=samples_per_task,
        declines=declines,
        rewrite_endpoint=rewrite_endpoint,
        rewrite_model=rewrite_model,
    )
    record = build_stage(options, log=lambda message: stderr.print(message, markup=False))
    stderr.print(summary_table(record, f"Stage {stage} dialogues in {out}"))
    _say_removed(record)
    skipped = sum(record.get("skipped", {}).values())
    stderr.print(
        f"Done in {record['seconds']:.1f} s"
        + (f"; {skipped} unreadable or missing images skipped" if skipped else "")
        + f". Train with: vcritic train --stage {stage} --data {out} --model MODEL --output OUT",
        markup=False,
    )


@data_app.command("synth", no_args_is_help=True, epilog=SYNTH_EPILOG, cls=Command)
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
            "--size",
            min=8,
            help="Centre-crop each source to a square and resize it to N x N pixels first (smaller ones are enlarged).",
            show_default=False,
        ),
    ] = None,
    seed: SeedOpt = 0,
    val_fraction: ValFractionOpt = 0.02,
    overwrite: OverwriteOpt = False,
) -> None:
    """Distort your own pristine images at several levels and write stage-1 pairs whose order is certain."""
    from vcritic.cli._output import make_progress, stderr
    from vcritic.data.datadir import summary_table
    from vcritic.data.synth import parse_kinds, synthesize

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
    _say_removed(record)
    stderr.print(
        f"{record['synth']['sources']} sources, {record['images']} images in {record['seconds']:.1f} s"
        + (f", {len(record['skipped_files'])} unreadable skipped" if record["skipped_files"] else "")
        + f". Train with: vcritic train --stage 1 --data {out} --model MODEL --output OUT;"
        + f" bench with: vcritic bench {out / 'manifest.csv'}",
        markup=False,
    )
