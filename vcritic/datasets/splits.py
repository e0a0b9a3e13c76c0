"""Train/test splits as in the paper, deterministic and writable to files.

- ``paper`` (default): 80% train / 20% test at random, per dataset, with the fixed seed :data:`SPLIT_SEED`.
  Datasets with reference images (KADID-10k) are split by reference instead: 65 of the 81 pristine images and all
  their distorted versions train, the other 16 test, so no content is on both sides.
- ``official``: the dataset authors' own split where they publish one (KonIQ-10k: 7058 train / 1000 val / 2015
  test from ``koniq10k_distributions_sets.csv``; a manifest's ``split`` column).

The shuffle runs over image names in sorted order, so the split depends only on the seed and on which images the
dataset has, never on file order, machine or Python version.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from vcritic.base.csvio import DictWriter
from vcritic.base.files import open_atomically
from vcritic.datasets.records import Record
from vcritic.errors import UsageError, VcriticError
from vcritic.readout.schema import split_columns

SPLIT_SEED = 2403  # from the paper's arXiv id (2403.12806); fixed so everyone gets the same split
TEST_FRACTION = 0.2
KADID_REFERENCES, KADID_TEST_REFERENCES = 81, 16
SCHEMES = ("paper", "official")
SPLIT_NAMES = ("train", "val", "test", "all")


def paper_split(records: Sequence[Record], *, by_reference: bool = False, seed: int = SPLIT_SEED) -> dict[str, str]:
    """Image name -> "train" or "test", as in the paper: each dataset among ``records`` is split on its own."""
    datasets = sorted({r.dataset for r in records})
    if len(datasets) > 1:  # a manifest with a dataset column
        assignment: dict[str, str] = {}
        for name in datasets:
            group = [r for r in records if r.dataset == name]
            assignment.update(paper_split(group, by_reference=by_reference, seed=seed))
        return assignment
    if by_reference:
        return _split_by_reference(records, seed)
    names = sorted({r.image for r in records})
    random.Random(seed).shuffle(names)
    n_test = round(len(names) * TEST_FRACTION)
    test = set(names[:n_test])
    return {name: "test" if name in test else "train" for name in names}


def _split_by_reference(records: Sequence[Record], seed: int) -> dict[str, str]:
    """Whole references to one side: 16 of KADID's 81 test, the same share (at least one) of other reference sets."""
    reference = {r.image: r.ref_id or r.image for r in records}
    refs = sorted(set(reference.values()))
    random.Random(seed).shuffle(refs)
    n_test = round(len(refs) * KADID_TEST_REFERENCES / KADID_REFERENCES)
    if len(refs) >= 2:
        n_test = min(max(n_test, 1), len(refs) - 1)
    test_refs = set(refs[:n_test])
    return {name: "test" if ref in test_refs else "train" for name, ref in reference.items()}


def official_split(records: Sequence[Record], dataset: str) -> dict[str, str]:
    """Image name -> the authors' split ("train", "val", "test"); images without one are left out."""
    assignment = {r.image: r.official_split for r in records if r.official_split}
    if not assignment:
        hint = (
            "put koniq10k_distributions_sets.csv beside the scores file"
            if dataset == "koniq10k"
            else "only KonIQ-10k and manifests with a split column have one; use --split-scheme paper"
        )
        raise VcriticError(f"{dataset} has no official split here", hint=hint)
    return assignment


def assign(
    records: Sequence[Record], dataset: str, *, scheme: str = "paper", by_reference: bool = False,
    seed: int = SPLIT_SEED,
) -> dict[str, str]:  # fmt: skip
    """Image name -> split for ``scheme`` ("paper" or "official")."""
    if scheme == "paper":
        return paper_split(records, by_reference=by_reference, seed=seed)
    if scheme == "official":
        return official_split(records, dataset)
    raise UsageError(f"unknown split scheme {scheme!r}", hint=f"use one of: {', '.join(SCHEMES)}")


def select(records: Sequence[Record], assignment: dict[str, str], split: str) -> list[Record]:
    """The records of one split ("all": every record), in their original order."""
    if split not in SPLIT_NAMES:
        raise UsageError(f"unknown split {split!r}", hint=f"use one of: {', '.join(SPLIT_NAMES)}")
    if split == "all":
        return list(records)
    chosen = [r for r in records if assignment.get(r.image) == split]
    if not chosen:
        sides = ", ".join(sorted(set(assignment.values()))) or "none"
        hint = f"this split scheme has: {sides}"
        if split == "val":
            hint += "; a validation split exists only in the official scheme (KonIQ-10k)"
        raise VcriticError(f"the {split!r} split is empty", hint=hint)
    return chosen


def subsample(records: Sequence[Record], limit: int | None, seed: int = SPLIT_SEED) -> list[Record]:
    """At most ``limit`` records, drawn at random (seeded) so a quick run still covers the whole dataset."""
    if limit is None or limit >= len(records):
        return list(records)
    keep = set(random.Random(seed).sample(range(len(records)), limit))
    return [r for i, r in enumerate(records) if i in keep]


def write_split(assignment: dict[str, str], path: Path, records: Sequence[Record] = ()) -> Path:
    """Write ``image,split`` (plus ``ref_id`` where the records have one) as CSV, sorted by image name."""
    refs = {r.image: r.ref_id for r in records if r.ref_id}
    fields = split_columns(bool(refs))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomically(path, newline="") as handle:
        writer = DictWriter(handle, fields)
        writer.writeheader()
        for image in sorted(assignment):
            row = {"image": image, "split": assignment[image]}
            if refs:
                row["ref_id"] = refs.get(image, "")
            writer.writerow(row)
    return path


def read_split(path: Path) -> dict[str, str]:
    """Image name -> split, from a file written by :func:`write_split`."""
    from vcritic.datasets.records import read_csv_rows

    rows = read_csv_rows(path, ("image", "split"), "a split file with image and split columns")
    return {row["image"]: row["split"].strip() for row in rows}
