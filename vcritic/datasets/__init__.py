"""The public IQA datasets of the paper, read from their official annotation files, and generic CSV manifests.

>>> from vcritic.datasets import load_dataset
>>> records = load_dataset("koniq10k", "/data/iqa")      # /data/iqa/koniq10k/... or /data/iqa itself

Every dataset has a conventional folder name under a common root (its registry name: ``koniq10k``, ``spaq``,
``livec``, ``flive``, ``kadid10k``, ``agiqa3k``, ``aigciqa2023``, ``cgiqa6k``); the authors' own folder names
(``ChallengeDB_release``, ``AIGCIQA2023``, ...) are found too. Unknown names get a "did you mean".
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from vcritic.base.docs_url import docs_page
from vcritic.datasets import agiqa, aigciqa, cgiqa, flive, kadid, koniq, livec, spaq
from vcritic.datasets.manifest import load_manifest
from vcritic.datasets.records import ATTRIBUTES, DatasetSpec, Record, normalise_name
from vcritic.errors import UsageError, VcriticError

# In the order of the paper's Table 2, then AIGCIQA-2023 (used for authenticity only).
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        koniq.SPEC,
        spaq.SPEC,
        flive.SPEC,
        livec.SPEC,
        cgiqa.SPEC,
        kadid.SPEC,
        agiqa.SPEC,
        aigciqa.SPEC,
    )
}

_LOOKUP = {normalise_name(n): spec for spec in DATASETS.values() for n in (spec.name, spec.title, *spec.aliases)}

__all__ = [
    "ATTRIBUTES",
    "DATASETS",
    "DatasetSpec",
    "Record",
    "find_datasets",
    "get_dataset",
    "load_dataset",
    "load_manifest",
    "locate_dataset",
]


def get_dataset(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (case and punctuation don't matter: KonIQ-10k, koniq10k, koniq)."""
    spec = _LOOKUP.get(normalise_name(name))
    if spec is not None:
        return spec
    names = list(DATASETS)
    close = difflib.get_close_matches(name.lower(), names + [a for s in DATASETS.values() for a in s.aliases], n=1)
    hint = f"did you mean {_LOOKUP[normalise_name(close[0])].name!r}? " if close else ""
    raise UsageError(
        f"unknown dataset {name!r}",
        hint=f"{hint}known: {', '.join(names)}; or give a CSV manifest file",
    )


def locate_dataset(spec: DatasetSpec, root: str | os.PathLike) -> Path:
    """The folder holding ``spec``'s annotation files: ``root`` itself or its conventional sub-folder."""
    root = Path(root).expanduser()
    if not root.exists():
        raise VcriticError(f"no such folder: {root}", hint="--root is the folder holding the datasets")
    found = spec.locate(root)
    if found is None:
        markers = " or ".join(spec.markers)
        raise VcriticError(
            f"{spec.title} not found in {root} (looked for {markers} there and in {root / spec.name}/)",
            hint=f"download it from {spec.url} and unpack it as {root / spec.name}/; see "
            + docs_page("guides/benchmarks", "getting-the-datasets"),
        )
    return found


def load_dataset(name: str | DatasetSpec, root: str | os.PathLike) -> list[Record]:
    """All records of a registered dataset under ``root`` (the dataset folder or the folder holding it)."""
    spec = name if isinstance(name, DatasetSpec) else get_dataset(name)
    records = spec.load(locate_dataset(spec, root))
    if not records:
        raise VcriticError(f"{spec.title} under {root} lists no images", hint="check the annotation file")
    return records


def find_datasets(root: str | os.PathLike) -> dict[str, Path]:
    """Registry name -> folder, for every registered dataset present under ``root``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise VcriticError(f"no such folder: {root}", hint="--root is the folder holding the datasets")
    found = {}
    for name, spec in DATASETS.items():
        folder = spec.locate(root)
        if folder is not None:
            found[name] = folder
    return found
