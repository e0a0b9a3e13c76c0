"""Loading the model for a command: fetch first (with a live download bar), then load under a spinner."""

from __future__ import annotations


def load_for_command(model: str | None, *, revision: str | None = None, allow_pickle: bool = False, **options):
    """``load_critic`` for the CLI. Resolving the checkpoint before the "Loading model..." spinner lets a first-use
    download show its own progress bar; ``load_critic`` then finds the model in the cache without network access."""
    from vcritic.cli._output import stderr
    from vcritic.hub import resolve_model
    from vcritic.loading import load_critic
    from vcritic.presets import DEFAULT_PRESET

    resolve_model(model or DEFAULT_PRESET, revision, allow_pickle=allow_pickle)
    with stderr.status("Loading model..."):
        return load_critic(model, revision=revision, allow_pickle=allow_pickle, **options)
