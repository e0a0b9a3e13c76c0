"""``vcritic data build``: the dialogues of one curriculum stage, from the training splits of the rated datasets.

Only training-split images are used: the paper's seeded 80/20 split (KADID-10k by reference, seed 2403, as
``vcritic bench`` evaluates), also leaving out KonIQ-10k's official test images, so neither test split ever leaks
into training. Of each dataset's training images a seeded :data:`~vcritic.data.datadir.VAL_FRACTION` (by image, or
by reference for KADID-10k) is held out for ``val.jsonl``. Images that do not open are skipped and counted.

- stage 1: relativity pairs within each dataset (:mod:`vcritic.data.relativity`).
- stage 2: by dataset role (:mod:`vcritic.data.multifunctional`): AI-generated datasets (AIGCIQA-2023) give the
  "generated" side of authenticity; datasets with attribute scores (SPAQ) give the five attributes and
  descriptions; the others (KonIQ-10k) give MOS, descriptions and the "photographed" side of authenticity.
- stage 3: a seeded sample of stage 1-2 dialogues per task, the user's instruction data, and declines
  (:mod:`vcritic.data.instruct`); ``val.jsonl`` gets held-out declines too, in the same share, on held-out images.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcritic.data.datadir import VAL_FRACTION, held_out_groups, rng_for
from vcritic.data.dialogues import Dialogue
from vcritic.datasets import DATASETS, Record, find_datasets, get_dataset, load_dataset, splits
from vcritic.errors import UsageError, VcriticError

STAGE_DATASETS = {
    1: ("koniq10k", "spaq", "flive", "livec", "cgiqa6k", "agiqa3k", "kadid10k"),  # the paper's Table 1
    2: ("koniq10k", "spaq", "aigciqa2023"),
}
SAMPLES_PER_TASK = 1000
DECLINE_FRACTION = 0.05

Log = Callable[[str], None]


@dataclass
class BuildOptions:
    stage: int
    out: Path
    root: Path | None = None
    datasets: list[str] | None = None  # None: every default dataset of the stage found under root
    seed: int = 0
    pairs_per_dataset: int = 10_000
    val_fraction: float = VAL_FRACTION
    overwrite: bool = False
    sources: list[Path] = field(default_factory=list)  # stage 3 --from
    instruct: list[Path] = field(default_factory=list)
    instruct_images: list[Path] = field(default_factory=list)  # one for all --instruct files, or one each
    samples_per_task: int = SAMPLES_PER_TASK
    declines: int | None = None
    rewrite_endpoint: str | None = None  # OpenAI-compatible server that rewrites the template descriptions
    rewrite_model: str | None = None


@dataclass
class Part:
    """One dataset's usable training images: the part that trains and the held-out part for val.jsonl."""

    spec_name: str
    train: list[Record]
    val: list[Record]
    skipped: int


def _opens(path: Path) -> bool:
    from PIL import Image

    from vcritic.base.images import open_regular

    try:  # open_regular: a FIFO or device named like an image must not block the build
        with open_regular(path) as handle, Image.open(handle) as image:
            image.verify()  # reads the header and checks the data without decoding every pixel
        return True
    except Exception:  # PIL raises many types (OSError, SyntaxError, struct.error...) for broken files
        return False


def readable(paths: Sequence[Path]) -> list[bool]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(_opens, paths))


def image_key(record: Record) -> str:
    return str(record.path.absolute())


def load_part(name: str, root: Path, seed: int, val_fraction: float) -> Part:
    """The training split of dataset ``name`` (readable images only), split into train and validation parts."""
    spec = get_dataset(name)
    records = load_dataset(spec, root)
    assignment = splits.assign(records, spec.name, by_reference=spec.split_by_reference)
    train = [r for r in records if assignment.get(r.image) == "train" and r.official_split != "test"]
    ok = readable([r.path for r in train])
    usable = [r for r, good in zip(train, ok, strict=True) if good]
    if not usable:
        raise VcriticError(
            f"{spec.title} under {root} has no readable training images ({len(train)} listed)",
            hint="check that the image files are there and open",
        )
    val_groups = held_out_groups((r.ref_id or r.image for r in usable), val_fraction, rng_for(seed, name, "val"))
    return Part(
        spec.name,
        [r for r in usable if (r.ref_id or r.image) not in val_groups],
        [r for r in usable if (r.ref_id or r.image) in val_groups],
        len(train) - len(usable),
    )


def choose_datasets(stage: int, root: Path, asked: Sequence[str] | None) -> list[str]:
    found = find_datasets(root)
    if asked:
        names = list(dict.fromkeys(get_dataset(a).name for a in asked))
        missing = [n for n in names if n not in found]
        if missing:
            titles = ", ".join(DATASETS[n].title for n in missing)
            raise VcriticError(
                f"{titles} not found under {root}", hint="unpack each dataset under --root by its name (koniq10k/, ...)"
            )
        return names
    defaults = STAGE_DATASETS.get(stage, STAGE_DATASETS[1] + STAGE_DATASETS[2])
    names = [n for n in dict.fromkeys(defaults) if n in found]
    if not names:
        wanted = ", ".join(DATASETS[n].title for n in dict.fromkeys(defaults))
        raise VcriticError(f"none of the stage-{stage} datasets found under {root} ({wanted})", hint="check --root")
    return names


def stage1(parts: dict[str, Part], options: BuildOptions) -> tuple[list[Dialogue], list[Dialogue]]:
    from vcritic.data.relativity import pair_dialogues, sample_pairs

    train: list[Dialogue] = []
    val: list[Dialogue] = []
    n_val = max(2, round(options.pairs_per_dataset * options.val_fraction)) if options.val_fraction > 0 else 0
    for name, part in parts.items():
        image = {r.path: image_key(r) for r in part.train + part.val}
        rng = rng_for(options.seed, name, "pairs")
        train += pair_dialogues(sample_pairs(part.train, options.pairs_per_dataset, rng, image), rng, name)
        val += pair_dialogues(sample_pairs(part.val, n_val, rng, image), rng, name)
    return train, val


def stage2_dialogues(parts: dict[str, list[Record]], seed: int, side: str) -> list[Dialogue]:
    from vcritic.data import multifunctional

    dialogues: list[Dialogue] = []
    photos: list[Record] = []
    generated: list[Record] = []
    for name, records in parts.items():
        image = {r.path: image_key(r) for r in records}
        rng = rng_for(seed, name, side, "stage2")
        if DATASETS[name].ai_generated:
            generated += records
        elif any(r.attributes for r in records):
            dialogues += multifunctional.attribute_dialogues(records, rng, image)
            dialogues += multifunctional.description_dialogues(records, rng, image)
        else:
            dialogues += multifunctional.quality_dialogues(records, rng, image)
            dialogues += multifunctional.description_dialogues(records, rng, image)
            photos += records
    if photos and generated:
        image = {r.path: image_key(r) for r in photos + generated}
        dialogues += multifunctional.authenticity_dialogues(
            photos, generated, rng_for(seed, side, "authenticity"), image
        )
    return dialogues


def stage2(parts: dict[str, Part], options: BuildOptions, log: Log) -> tuple[list[Dialogue], list[Dialogue]]:
    kinds = {DATASETS[n].ai_generated for n in parts}
    if kinds != {True, False}:
        log("authenticity dialogues need photographs (KonIQ-10k) and AI-generated images (AIGCIQA-2023): skipped")
    train = stage2_dialogues({n: p.train for n, p in parts.items()}, options.seed, "train")
    val = stage2_dialogues({n: p.val for n, p in parts.items()}, options.seed, "val")
    if options.rewrite_endpoint:
        from vcritic.data.rewrite import Rewriter

        rewriter = Rewriter(options.rewrite_endpoint, options.rewrite_model or "")
        train, val = _rewritten(train, rewriter), _rewritten(val, rewriter)
        log(
            f"Descriptions rewritten by {rewriter.url}: {rewriter.asked} asked, {rewriter.cached} from the cache, "
            f"{rewriter.kept_template} kept as templates (the rewrite lost the quality level)"
        )
    return train, val


def _rewritten(dialogues: list[Dialogue], rewriter) -> list[Dialogue]:
    from dataclasses import replace

    from vcritic.data.multifunctional import level_word

    at = [i for i, d in enumerate(dialogues) if d.task == "description"]
    texts = [dialogues[i].answer for i in at]
    outputs = rewriter.rewrite(texts, [level_word(dialogues[i].meta["mos"]) for i in at])
    result = list(dialogues)
    for i, text, output in zip(at, texts, outputs, strict=True):
        if output != text:
            result[i] = replace(dialogues[i], answer=output, meta={**dialogues[i].meta, "template": text})
    return result


def _sample_per_task(dialogues: Sequence[Dialogue], cap: int, rng: random.Random) -> list[Dialogue]:
    by_task: dict[str, list[Dialogue]] = {}
    for d in dialogues:
        by_task.setdefault(d.task, []).append(d)
    chosen: list[Dialogue] = []
    for task in sorted(by_task):
        group = by_task[task]
        chosen += rng.sample(group, min(cap, len(group)))
    return chosen


def _absolute(dialogue: Dialogue, folder: Path) -> Dialogue:
    from dataclasses import replace

    images = tuple(p if Path(p).is_absolute() else str((folder / p).absolute()) for p in dialogue.images)
    return replace(dialogue, images=images)


def _built_folder(folder: Path) -> tuple[list[Dialogue], list[Dialogue], list[str]]:
    from vcritic.data.datadir import DIALOGUES, VAL, read_info
    from vcritic.data.dialogues import read_dialogues

    info = read_info(folder)
    train = [_absolute(d, folder) for d in read_dialogues(folder / DIALOGUES)]
    val = [_absolute(d, folder) for d in read_dialogues(folder / VAL)] if (folder / VAL).is_file() else []
    return train, val, list(info.get("datasets", []))


def stage3(options: BuildOptions, log: Log) -> tuple[list[Dialogue], list[Dialogue], dict[str, Any]]:
    from vcritic.data.instruct import decline_dialogues, read_instruct

    pool_train: list[Dialogue] = []
    pool_val: list[Dialogue] = []
    datasets: list[str] = []
    skipped: dict[str, int] = {}
    if options.sources:
        for folder in options.sources:
            train, val, names = _built_folder(folder.expanduser())
            pool_train += train
            pool_val += val
            datasets += names
    else:
        if options.root is None:
            raise UsageError("stage 3 needs --root (to rebuild stages 1-2) or --from DIR,...", hint="give either")
        names = choose_datasets(3, options.root, options.datasets)
        parts = {}
        for name in names:
            log(f"Reading {DATASETS[name].title}")
            parts[name] = load_part(name, options.root, options.seed, options.val_fraction)
        skipped.update({n: p.skipped for n, p in parts.items() if p.skipped})
        for stage_names, build in ((STAGE_DATASETS[1], stage1), (STAGE_DATASETS[2], None)):
            subset = {n: p for n, p in parts.items() if n in stage_names}
            if not subset:
                continue
            train, val = build(subset, options) if build else stage2(subset, options, log)
            pool_train += train
            pool_val += val
        datasets = names
    rng = rng_for(options.seed, "stage3")
    train = _sample_per_task(pool_train, options.samples_per_task, rng)
    val = _sample_per_task(pool_val, options.samples_per_task, rng)
    instructions: list[Dialogue] = []
    folders = options.instruct_images
    if len(folders) not in (0, 1, len(options.instruct)):
        raise VcriticError(
            f"{len(folders)} --instruct-images for {len(options.instruct)} --instruct files",
            hint="give one --instruct-images for all files, or one after each --instruct",
        )
    for number, path in enumerate(options.instruct):
        images_dir = folders[number if len(folders) > 1 else 0] if folders else None
        found, missing = read_instruct(path.expanduser(), images_dir)
        ok = readable([Path(d.images[0]) for d in found])
        kept = [d for d, good in zip(found, ok, strict=True) if good]
        lost = len(missing) + len(found) - len(kept)
        if lost:
            skipped[path.stem] = skipped.get(path.stem, 0) + lost
            log(f"{path}: {lost} of {len(found) + len(missing)} images missing or unreadable, skipped")
        if not kept:
            raise VcriticError(f"{path}: none of its images were found", hint="point --instruct-images at them")
        instructions += kept
        datasets.append(path.stem)
    # Declines are asked about quality-data images; instruction images only where there are none.
    images = sorted({p for d in train for p in d.images}) or sorted({p for d in instructions for p in d.images})
    n_declines = options.declines
    if n_declines is None:
        n_declines = max(1, round(DECLINE_FRACTION * (len(train) + len(instructions))))
    declines = decline_dialogues(images, n_declines, rng)
    # Held out like every other task: asked about held-out images only, in the training share, so periodic
    # evaluation checks that the model still declines (a separate generator leaves the training file as it was).
    val_images = sorted({p for d in val for p in d.images})
    n_val = max(1, round(n_declines * len(val) / (len(train) + len(instructions)))) if n_declines and val else 0
    val_declines = decline_dialogues(val_images, n_val, rng_for(options.seed, "stage3", "val declines"))
    extra = {"from": [str(p) for p in options.sources], "instruct": [str(p) for p in options.instruct]}
    return train + instructions + declines, val + val_declines, {"datasets": datasets, "skipped": skipped, **extra}


def build(options: BuildOptions, log: Log = lambda message: None) -> dict[str, Any]:
    """Build ``options.stage``'s dialogues and write the data folder; returns the ``data.json`` record. The folder
    is locked for the run: a second ``data build`` or ``data synth`` into it is refused, not interleaved."""
    from vcritic.base.files import locked_folder

    with locked_folder(Path(options.out).expanduser(), flag="--out"):
        return _build(options, log)


def _build(options: BuildOptions, log: Log) -> dict[str, Any]:
    from vcritic.data import relativity
    from vcritic.data.datadir import DIALOGUES, INFO, VAL, check_out, remove_stale, write_data_dir, written_before

    start = time.perf_counter()
    if options.stage not in (1, 2, 3):
        raise UsageError(f"--stage is {options.stage}", hint="use 1, 2 or 3")
    if not 0 <= options.val_fraction < 1:
        raise UsageError(f"--val-fraction is {options.val_fraction}", hint="use a fraction from 0 up to 1")
    if options.stage != 3 and (options.sources or options.instruct):
        raise UsageError("--from and --instruct are for --stage 3", hint="drop them, or build stage 3")
    if options.stage != 3 and options.root is None:
        raise UsageError("--root is required", hint="give the folder holding the datasets (koniq10k/, spaq/, ...)")
    if options.root is not None and not options.root.expanduser().is_dir():
        raise VcriticError(f"no such folder: {options.root}", hint="--root is the folder holding the datasets")
    if options.rewrite_endpoint and not options.rewrite_model:
        raise UsageError("--rewrite-endpoint needs --rewrite-model", hint="name the model the endpoint serves")
    if options.rewrite_endpoint and options.stage == 1:
        raise UsageError("--rewrite-endpoint is for stages 2 and 3", hint="stage 1 has no descriptions")
    for path in [*options.sources, *options.instruct]:
        if not path.expanduser().exists():
            raise VcriticError(f"no such file or folder: {path}", hint="check the --from / --instruct paths")
    for folder in options.sources:
        # --overwrite would replace the dialogues this run samples (and a synth folder's pairs are not rebuilt).
        if folder.expanduser().resolve() == options.out.expanduser().resolve():
            raise VcriticError(f"--out {options.out} is one of the --from folders", hint="write to another folder")
    check_out(options.out, options.overwrite)
    earlier = written_before(options.out) if options.out.is_dir() else set()
    info: dict[str, Any] = {"stage": options.stage, "seed": options.seed, "source": "build"}
    if options.stage == 3:
        train, val, extra = stage3(options, log)
        info.update(extra)
        info["samples_per_task"] = options.samples_per_task
    else:
        root = options.root.expanduser()
        names = choose_datasets(options.stage, root, options.datasets)
        parts = {}
        for name in names:
            log(f"Reading {DATASETS[name].title}")
            parts[name] = load_part(name, root, options.seed, options.val_fraction)
        if options.stage == 1:
            train, val = stage1(parts, options)
            info.update(
                pairs_per_dataset=options.pairs_per_dataset,
                noise_factor=relativity.NOISE_FACTOR,
                min_gap=relativity.MIN_GAP,
            )
        else:
            train, val = stage2(parts, options, log)
        info["datasets"] = names
        info["skipped"] = {n: p.skipped for n, p in parts.items() if p.skipped}
    if not train:
        raise VcriticError(f"stage {options.stage} produced no dialogues", hint="check the datasets under --root")
    info["val_fraction"] = options.val_fraction
    if options.rewrite_endpoint:
        info["rewrite"] = {"endpoint": options.rewrite_endpoint, "model": options.rewrite_model}
    record = write_data_dir(options.out, train, val, info)
    # Only now, so a build that fails leaves the earlier one whole; e.g. a synth run's images and manifest go.
    record["removed"] = remove_stale(options.out, earlier, [options.out / n for n in (DIALOGUES, VAL, INFO)])
    record["seconds"] = time.perf_counter() - start
    return record
