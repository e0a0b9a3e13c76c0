"""``vcritic models``: the presets, what is in the local cache, and ``vcritic models rm`` to free disk."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vcritic.cli._help import Command, Group
from vcritic.cli._options import json_flag

models_app = typer.Typer(
    help="List model presets and the local cache (with sizes); remove cached models.",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=Group,
)


JsonOpt = json_flag("Print presets and cache contents as JSON.")


@models_app.callback(invoke_without_command=True)
def list_models(
    ctx: typer.Context,
    long: Annotated[
        bool,
        typer.Option(
            "--long",
            "-l",
            help="One block per preset: revision, read-out (prompt, stem, level words or parsed number, scale), "
            "trained tasks and what it was trained on.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the presets (marking the default and what is cached) and any other models in the cache."""
    if ctx.invoked_subcommand is not None:
        return
    from vcritic.base.home import hub_cache_dir
    from vcritic.cli._output import stderr, stdout

    presets, others = _inventory()
    if as_json:
        record = {"cache_dir": str(hub_cache_dir()), "presets": presets, "other": others}
        stdout.print(json.dumps(record, indent=2), markup=False)
        return
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from vcritic.model.hub import format_size

    table = Table(
        title="Presets (* = default with CUDA, + = default without)", title_justify="left", box=box.SIMPLE_HEAD
    )
    columns = ("name / repo", "size", "suits", "trained for", "SRCC KonIQ/SPAQ/KADID", "license", "cached")
    # Names are what people type: the column is never narrower than the longest, so none wraps; a long repo id
    # on the line below may fold on a narrow terminal.
    widest = max((len(p["name"]) + 2 for p in presets), default=10)
    for column in columns:
        table.add_column(column, overflow="fold", min_width=widest if column == "name / repo" else None)
    for p in presets:
        cached = {"yes": f"yes, {format_size(p['size_bytes'])}", "partial": "partial", "no": "-"}[p["cached"]]
        mark = " *" if p["default"] else " +" if p["default_without_cuda"] else ""
        size = f"{p['params']}, {p['bf16_gb']:g} GB bf16"
        table.add_row(
            f"{p['name']}{mark}\n[dim]{p['repo']}[/]", size, p["machine"], _trained(p), _srcc(p), p["license"], cached
        )
    if long:  # one block per preset: readable at any terminal width
        for p in presets:
            revision = p["revision"] if p["pinned"] else f"{p['revision']} (not pinned)"
            cached = p["cached"]
            if cached == "yes":
                cached = f"yes, {format_size(p['size_bytes'])}: {escape(str(p['path']))}"
            default = " (default)" if p["default"] else " (default without CUDA)" if p["default_without_cuda"] else ""
            r = p["readout_spec"]
            lines = [
                f"[bold]{p['name']}[/]{default}",
                f"  repo      {p['repo']} @ {revision}",
                f"  family    {p['family']}, {p['params']} parameters, {p['bf16_gb']:g} GB in bf16: {p['machine']}",
                f"  readout   {r['name']}: {escape(_readout_text(r))}",
                f"  trained   {_trained(p)}; published SRCC KonIQ/SPAQ/KADID {_srcc(p)}",
                f"  license   {p['license']}",
                f"  cached    {cached}",
                f"  about     {p['note']}",
            ]
            stdout.print("\n".join(lines), highlight=False)
    else:
        stdout.print(table)
    if others:
        other_table = Table(title="Other models in the cache", title_justify="left", box=box.SIMPLE_HEAD)
        for column in ("repo", "size", "revisions"):
            other_table.add_column(column, overflow="fold")
        for o in others:
            shown = ", ".join(o["refs"] + [c[:8] for c in o["revisions"] if c not in o["ref_commits"]])
            other_table.add_row(escape(o["repo"]), format_size(o["size_bytes"]), escape(shown) or "-")
        stdout.print(other_table)
    total = sum(p["size_bytes"] for p in presets) + sum(o["size_bytes"] for o in others)
    stderr.print(
        f"Cache: {hub_cache_dir()} ({format_size(total)}). Fetch with: vcritic download NAME; "
        "free disk with: vcritic models rm NAME",
        markup=False,
    )


@models_app.command("rm", cls=Command)
def remove(
    name: Annotated[str, typer.Argument(help="A preset name or hub repo id in the cache.", show_default=False)],
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="Remove only this revision (commit, or a branch name).", show_default=False),
    ] = None,
) -> None:
    """Delete a cached model (all its revisions unless --revision) and free its disk space."""
    from vcritic.cli._output import stderr
    from vcritic.model.hub import format_size
    from vcritic.model.hub import remove as remove_cached

    repo, freed = remove_cached(name, revision)
    what = f"{repo} at {revision}" if revision else repo
    stderr.print(f"Removed {what} from the cache (freed {format_size(freed)})", markup=False)


def _trained(p: dict) -> str:
    return ", ".join(p["trained_tasks"]) if p["trained_tasks"] is not None else "zero-shot"


def _srcc(p: dict) -> str:
    return " / ".join(f"{v:.3f}".lstrip("0") for v in p["srcc"].values()) if p["srcc"] else "-"


def _readout_text(r: dict) -> str:
    """A read-out in one line: what is asked, where the score is read, and on which scale."""
    if r["kind"] == "reasoning":
        how = f"generate, parse the number in {r['answer_pattern']} ({r['scale']})"
    else:
        words = ", ".join(f"{word.strip()} {value:g}" for word, value in r["levels"])
        how = f"after {r['stem']!r}: softmax over {words} ({r['scale']})"
    return f"{r['prompt']!r}; {how} -> 0-100"


def _inventory() -> tuple[list[dict], list[dict]]:
    """Presets with their cache state, and the other cached repos, as plain records."""
    from vcritic.model.hub import cached_repos, cached_snapshot
    from vcritic.model.presets import CPU_DEFAULT_PRESET, DEFAULT_PRESET, PRESETS

    repos = cached_repos()
    presets = []
    for preset in PRESETS.values():
        in_cache = repos.get(preset.repo)
        snapshot = cached_snapshot(preset.repo, preset.revision) if in_cache else None
        state = "yes" if snapshot is not None else ("partial" if in_cache else "no")
        presets.append(
            {
                "name": preset.name,
                "repo": preset.repo,
                "revision": preset.revision,
                "pinned": preset.pinned,
                "family": preset.family,
                "readout": preset.readout,
                "readout_spec": {
                    "name": preset.spec.name,
                    "kind": preset.spec.kind,
                    "prompt": preset.spec.prompt,
                    "stem": preset.spec.stem,
                    "levels": [list(level) for level in preset.spec.levels],
                    "answer_pattern": preset.spec.answer_pattern or None,
                    "scale": preset.spec.scale_text,
                },
                "trained_tasks": list(preset.trained_tasks) if preset.trained_tasks is not None else None,
                "license": preset.license,
                "params": preset.params,
                "bf16_gb": preset.bf16_gb,
                "machine": preset.machine,
                "srcc": dict(zip(("koniq", "spaq", "kadid"), preset.srcc, strict=True)) if preset.srcc else None,
                "note": preset.note,
                "default": preset.name == DEFAULT_PRESET,
                "default_without_cuda": preset.name == CPU_DEFAULT_PRESET,
                "cached": state,
                "size_bytes": in_cache.size if in_cache else 0,
                "path": str(snapshot) if snapshot is not None else None,
            }
        )
    preset_repos = {p.repo for p in PRESETS.values()}
    others = []
    for repo in sorted(set(repos) - preset_repos):
        info = repos[repo]
        ref_commits = [_ref_commit(info.path, ref) for ref in info.refs]
        others.append(
            {
                "repo": repo,
                "size_bytes": info.size,
                "revisions": list(info.revisions),
                "refs": list(info.refs),
                "ref_commits": [c for c in ref_commits if c],
                "path": str(info.path),
            }
        )
    return presets, others


def _ref_commit(repo_path, ref: str) -> str | None:
    from vcritic.model.hub import read_ref

    return read_ref(repo_path / "refs" / ref)
