"""``vcritic download``: fetch a checkpoint into the local cache, so later runs (and offline runs) need no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vcritic.cli._options import AllowPickleOpt, json_flag

EPILOG = (
    "Only what loading needs is fetched: configs, tokenizer/processor files, chat templates and *.safetensors "
    "weights (never duplicate .bin files). Interrupted downloads continue where they stopped when run again. "
    "The cache is $VCRITIC_HOME/hub (or $HF_HUB_CACHE, or $HF_HOME/hub, when set); HF_ENDPOINT and HF_TOKEN "
    "work as for other Hugging Face tools. The snapshot folder is printed on stdout."
)


JsonOpt = json_flag("Print what was fetched as JSON.")


def download(
    name: Annotated[
        str,
        typer.Argument(help="A preset name (see: vcritic models) or a hub repo id (org/name).", show_default=False),
    ],
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision",
            help="Branch, tag or commit to fetch. Default: the preset's pinned commit, or main for a repo id.",
            show_default=False,
        ),
    ] = None,
    allow_pickle: AllowPickleOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download a model into the local cache (resumable, with a progress bar)."""
    from vcritic.cli._output import stderr, stdout
    from vcritic.model.hub import download as fetch
    from vcritic.model.hub import format_size

    target, path, fetched = fetch(name, revision, allow_pickle=allow_pickle)
    size = snapshot_size(path)
    if as_json:
        record = {
            "name": target.name,
            "repo": target.repo,
            "revision": target.revision,
            "commit": path.name,
            "path": str(path),
            "size_bytes": size,
            "downloaded": fetched,
        }
        stdout.print(json.dumps(record), markup=False)
        return
    what = f"{target.label} (commit {path.name[:12]}, {format_size(size)})"
    stderr.print(f"{'Downloaded' if fetched else 'Up to date:'} {what}", markup=False)
    stdout.print(str(path), markup=False)


def snapshot_size(path: Path) -> int:
    """Bytes of the files a snapshot folder links to (its entries are symlinks into the cache's blobs)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
