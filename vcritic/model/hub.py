"""Turning a ``--model`` value into a local checkpoint directory, and the local model cache behind it.

``--model`` is a local folder (used as it is), a preset name (:mod:`vcritic.model.presets`) or a hub repo id. Hub models
live in the hub's own cache layout (``models--org--name``) under :func:`vcritic.base.home.hub_cache_dir`.

A model that is complete in the cache is used from there without any network access, whatever the revision, so a
score never changes because a branch moved upstream; ``vcritic download NAME`` is what checks the hub for updates.
Only what loading needs is fetched: top-level configs, tokenizer/processor files, chat templates and the
``*.safetensors`` weights. Pickled weights (``*.bin``, ``*.pt``...) can run code when loaded: a repo that has only
those is refused unless the user allows pickle, and they are never fetched next to safetensors.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vcritic.base.home import hub_cache_dir, hub_endpoint, hub_offline
from vcritic.errors import VcriticError
from vcritic.model.presets import get_preset, preset_for_repo, unknown_model_error

# What loading needs from a repo (top-level files only); pickled weights only when the user allows pickle and the
# repo has no safetensors.
CONFIG_PATTERNS = ["*.json", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]
SAFE_WEIGHT_PATTERNS = ["*.safetensors"]
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
MAX_REF_BYTES = 4096  # a Hugging Face cache ref file holds one 40-character commit hash
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Target:
    """A hub model as the user named it: the repo, the revision to use, and how to talk about it."""

    name: str  # what the user typed (preset name or repo id): used in "vcritic download NAME"
    repo: str
    revision: str
    explicit_revision: bool  # the user passed --revision (repeat it in the fetch command)

    @property
    def label(self) -> str:
        shown = self.repo if self.name == self.repo else f"{self.name} ({self.repo})"
        return f"{shown} at revision {self.revision[:12]}" if self.explicit_revision else shown

    @property
    def fetch_command(self) -> str:
        command = f"vcritic download {self.name}"
        return command + (f" --revision {self.revision}" if self.explicit_revision else "")


def resolve_model(name: str, revision: str | None = None, *, allow_pickle: bool = False) -> Path:
    """A local directory holding the checkpoint ``name`` (a folder, a preset name or a hub repo id).

    Hub models come from the cache when they are complete there (no network access at all); otherwise they are
    downloaded once, with a notice on stderr, unless the hub is offline (``HF_HUB_OFFLINE=1``).
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if revision is not None:  # a folder has no revisions: taking it as given would ignore what was asked
            raise VcriticError(
                f"--revision {revision} was given, but {name} is a local folder, not a hub model",
                hint="drop --revision, or name the hub repo id to load that revision",
            )
        return path
    if path.exists():
        raise VcriticError(
            f"{name} is a file, not a checkpoint directory", hint="pass the folder that holds config.json"
        )
    target = hub_target(name, revision)
    cached = cached_snapshot(target.repo, target.revision, allow_pickle=allow_pickle)
    if cached is not None:
        return cached
    if hub_offline():
        raise VcriticError(
            f"{target.label} is not in the local cache and the hub is offline (HF_HUB_OFFLINE); "
            f"fetch it first with: {target.fetch_command}"
        )
    notice = (
        f"vcritic: {target.label} is not in the local cache; downloading it to {hub_cache_dir()} "
        "(once: later runs use the cache)"
    )
    return _fetch(target, allow_pickle=allow_pickle, progress=None, notice=notice)


def hub_target(name: str, revision: str | None = None) -> Target:
    """What hub repo ``name`` stands for; unknown names get a did-you-mean."""
    preset = get_preset(name)
    if preset is not None:
        return Target(preset.name, preset.repo, revision or preset.revision, explicit_revision=revision is not None)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise VcriticError(f"no such checkpoint directory: {name}", hint="check the path")
    if "/" not in name:
        raise unknown_model_error(name)
    if not _REPO_ID.match(name):
        raise VcriticError(f"{name!r} is not a valid hub repo id", hint="repo ids look like org/name")
    # A preset's repo id means the preset's weights, so the two names share one cached snapshot (also offline).
    preset = preset_for_repo(name)
    default = preset.revision if preset is not None else "main"
    return Target(name, name, revision or default, explicit_revision=revision is not None)


def download(name: str, revision: str | None = None, *, allow_pickle: bool = False, progress: bool | None = None):
    """Fetch ``name`` into the cache (or bring a branch up to date) and return ``(target, snapshot path, fetched)``.

    A pinned commit that is already complete in the cache needs no network access; so does anything cached while
    the hub is offline.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        raise VcriticError(f"{name} is a local folder: nothing to download", hint="pass it to --model as it is")
    target = hub_target(name, revision)
    cached = cached_snapshot(target.repo, target.revision, allow_pickle=allow_pickle)
    if cached is not None and (_COMMIT.match(target.revision) or hub_offline()):
        return target, cached, False
    if hub_offline():
        raise VcriticError(
            f"cannot download {target.label}: the hub is offline (HF_HUB_OFFLINE is set)",
            hint="unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to download",
        )
    path = _fetch(target, allow_pickle=allow_pickle, progress=progress)
    return target, path, path != cached


# --- the cache -----------------------------------------------------------------------------------------------------


def repo_folder(repo: str) -> str:
    return "models--" + repo.replace("/", "--")


def cached_snapshot(repo: str, revision: str = "main", *, allow_pickle: bool = False) -> Path | None:
    """The snapshot folder of ``repo`` at ``revision`` when everything loading needs is in the cache, else None.

    Reads only the local disk. Completeness is checked against the file listing the hub cached at download time, so
    an interrupted download counts as missing.
    """
    cache = hub_cache_dir()
    storage = cache / repo_folder(repo)
    commit = _cached_commit(storage, revision)
    if commit is None:
        return None
    snapshot = storage / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    listing = _cached_listing(repo, commit, cache)
    if listing is None:  # filled by another tool or an older huggingface_hub: trust what is there
        markers = ("config.json", "vcritic.json", "adapter_config.json")
        return snapshot if any((snapshot / m).is_file() for m in markers) else None
    wanted = select_files(listing, label=repo, allow_pickle=allow_pickle)
    return snapshot if all((snapshot / f).is_file() for f in wanted) else None


def _cached_commit(storage: Path, revision: str) -> str | None:
    if _COMMIT.match(revision):
        return revision
    return read_ref(storage / "refs" / revision)


def read_ref(ref: Path) -> str | None:
    """The commit a Hugging Face cache ref file names; None when it is missing, not a regular file (a FIFO would
    block the read) or larger than a ref can be."""
    try:
        if not ref.is_file() or ref.stat().st_size > MAX_REF_BYTES:
            return None
        return ref.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _cached_listing(repo: str, commit: str, cache: Path) -> dict[str, int] | None:
    from huggingface_hub import get_cached_repo_tree  # since huggingface_hub 1.23, our lowest version

    try:
        files = get_cached_repo_tree(repo, revision=commit, cache_dir=cache)
    except Exception as err:  # CachedRepoTreeNotFoundError (named differently across versions)
        if "NotFound" in type(err).__name__:
            return None
        raise
    return {f.path: f.size for f in files}


def select_files(listing: dict[str, int] | Iterable[tuple[str, int]], *, label: str, allow_pickle: bool):
    """The files (name -> size) to fetch from a repo listing; refuses repos whose only weights are pickled."""
    entries = dict(listing)
    top = {path: size for path, size in entries.items() if "/" not in path}

    def matching(patterns):
        return {p: s for p, s in top.items() if any(fnmatch.fnmatchcase(p, pat) for pat in patterns)}

    configs, safe, pickled = matching(CONFIG_PATTERNS), matching(SAFE_WEIGHT_PATTERNS), matching(PICKLE_PATTERNS)
    if safe:
        return {**configs, **safe}
    if pickled and allow_pickle:
        return {**configs, **pickled}
    if pickled:
        shown = ", ".join(sorted(pickled)[:3]) + (", ..." if len(pickled) > 3 else "")
        raise VcriticError(
            f"{label} has only pickled weights ({shown}), which can run code when loaded",
            hint="pass --allow-pickle if you trust its author, or use a repo with *.safetensors weights",
        )
    raise VcriticError(
        f"{label} has no model weights that vcritic can load (no *.safetensors at the top level)",
        hint="pass a transformers checkpoint saved with save_pretrained (config.json + *.safetensors)",
    )


# --- fetching ------------------------------------------------------------------------------------------------------


def _fetch(target: Target, *, allow_pickle: bool, progress: bool | None, notice: str | None = None) -> Path:
    """Download what loading needs of ``target``; ``notice`` goes to stderr once the hub has answered."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.hf_api import RepoFile

    endpoint, cache = hub_endpoint(), hub_cache_dir()
    with _hub_errors(target, endpoint, cache):
        api = HfApi(endpoint=endpoint)
        # model_info first: it does not retry, so a missing network fails at once (the tree listing retries for ~20 s)
        commit = api.model_info(target.repo, revision=target.revision, timeout=10).sha or target.revision
        files = api.list_repo_tree(target.repo, revision=commit)
        listing = {f.path: f.size for f in files if isinstance(f, RepoFile)}
        wanted = select_files(listing, label=target.label, allow_pickle=allow_pickle)
        _check_free_space(target, cache, sum(wanted.values()))
        if notice:
            print(notice, file=sys.stderr, flush=True)
        bars = _progress_bar_class(f"Downloading {target.name}", progress)
        try:
            path = snapshot_download(
                target.repo,
                revision=target.revision,
                cache_dir=cache,
                endpoint=endpoint,
                allow_patterns=[glob.escape(f) for f in wanted],
                tqdm_class=bars,
            )
        finally:
            bars.close_all()
    if notice:
        size = format_size(sum(wanted.values()))
        print(f"vcritic: downloaded {target.label} ({size})", file=sys.stderr, flush=True)
    return Path(path)


def _progress_bar_class(label: str, progress: bool | None):
    """A tqdm class for snapshot_download that shows one bar on stderr: bytes of ``label`` written, rate, time left.

    huggingface_hub opens three bars (a file counter, network bytes and bytes written, named in Xet terms) and never
    closes two of them, so they print twice and run into the next line. This class shows only the bytes written,
    under vcritic's own label, and :meth:`close_all` ends them cleanly. Silent when nobody watches stderr.
    """
    if progress is None:
        from vcritic.base.progress import progress_enabled

        # Under a rich spinner (a command's "Loading model..."), stderr is rich's proxy and every redraw of a bar
        # would become a new line: stay quiet there, the notice lines say what happens.
        progress = progress_enabled() and not hasattr(sys.stderr, "rich_proxied_file")
    from tqdm.auto import tqdm

    class DownloadBar(tqdm):
        opened: list = []

        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            shown = progress and kwargs.get("unit") == "B" and not str(kwargs.get("desc", "")).startswith("Downloading")
            if shown:
                kwargs.pop("bar_format", None)
                kwargs.update(desc=label, dynamic_ncols=True, leave=True)
            kwargs["disable"] = not shown
            super().__init__(*args, **kwargs)
            DownloadBar.opened.append(self)

        def set_description(self, desc=None, refresh=True):  # keep the label ("Reconstruction complete" is Xet talk)
            pass

        def set_description_str(self, desc=None, refresh=True):
            pass

        @classmethod
        def close_all(cls) -> None:
            for bar in cls.opened:
                bar.close()
            cls.opened.clear()

    return DownloadBar


def _free_bytes(directory: Path) -> int:
    for path in (directory, *directory.parents):
        if path.exists():
            return shutil.disk_usage(path).free
    return sys.maxsize


def _check_free_space(target: Target, cache: Path, total: int) -> None:
    blobs = cache / repo_folder(target.repo) / "blobs"
    have = sum(f.stat().st_size for f in blobs.iterdir() if f.is_file()) if blobs.is_dir() else 0
    needed, free = max(0, total - have), _free_bytes(cache)
    if needed > free:
        raise VcriticError(
            f"not enough disk space for {target.label}: it needs {format_size(needed)}, "
            f"{format_size(free)} is free in {cache}",
            hint="free some space (vcritic models rm NAME), or set VCRITIC_HOME or HF_HUB_CACHE to a bigger disk",
        )


def format_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _is_connection_error(err: BaseException) -> bool:
    """Network trouble, from huggingface_hub or from its HTTP client (httpx, whose module name varies)."""
    if isinstance(err, ConnectionError):  # includes huggingface_hub's OfflineModeIsEnabled
        return True
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(names & {"TransportError", "NetworkError", "TimeoutException", "ConnectError", "ProtocolError"})


@contextmanager
def _hub_errors(target: Target, endpoint: str, cache: Path) -> Iterator[None]:
    """Turn what huggingface_hub raises into one-line messages that name the next step."""
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rerun = "run the same command again to continue where it stopped"
    try:
        yield
    except GatedRepoError:
        raise VcriticError(
            f"{target.label} is gated: accept its terms at {endpoint}/{target.repo} first",
            hint="then log in with `hf auth login` or set HF_TOKEN",
        ) from None
    except RepositoryNotFoundError:
        raise VcriticError(
            f"model repo {target.repo} was not found on the hub (or it is private)",
            hint="check the name (see: vcritic models); for a private repo log in with `hf auth login` or set HF_TOKEN",
        ) from None
    except RevisionNotFoundError:
        raise VcriticError(
            f"revision {target.revision!r} was not found in {target.repo}",
            hint="pass a branch, tag or commit sha that exists with --revision",
        ) from None
    except DisabledRepoError:
        raise VcriticError(f"access to {target.repo} has been disabled on the hub") from None
    except HFValidationError as err:
        raise VcriticError(f"{target.name!r} is not a valid hub repo id: {str(err).splitlines()[0]}") from None
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise VcriticError(
                f"the disk is full: downloading {target.label} into {cache} failed",
                hint=f"free some space (or set VCRITIC_HOME or HF_HUB_CACHE to a bigger disk), then {rerun}",
            ) from None
        if isinstance(err, HfHubHTTPError):
            status = getattr(getattr(err, "response", None), "status_code", "an error")
            raise VcriticError(
                f"the hub answered {status} while downloading {target.label}", hint=f"try again later; {rerun}"
            ) from None
        if isinstance(err, LocalEntryNotFoundError) or _is_connection_error(err):
            raise _unreachable(target, endpoint) from None
        raise
    except Exception as err:
        if _is_connection_error(err):
            raise _unreachable(target, endpoint) from None
        raise


def _unreachable(target: Target, endpoint: str) -> VcriticError:
    if cached_snapshot(target.repo, target.revision, allow_pickle=True) is None:
        return VcriticError(
            f"cannot reach the hub at {endpoint} and {target.label} is not (fully) in the local cache; "
            f"when online, fetch it with: {target.fetch_command}"
        )
    return VcriticError(
        f"cannot reach the hub at {endpoint} to update {target.label}",
        hint="check the network; the cached copy stays usable (vcritic loads it without the hub)",
    )


# --- listing and removing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedRepo:
    repo: str
    size: int
    revisions: tuple[str, ...]  # commit shas
    refs: tuple[str, ...]  # branch/tag names that point into the cache
    path: Path


def cached_repos() -> dict[str, CachedRepo]:
    """Model repos in the cache (repo id -> what is there), read from disk only."""
    from huggingface_hub import scan_cache_dir

    cache = hub_cache_dir()
    if not cache.is_dir():
        return {}
    try:
        info = scan_cache_dir(cache)
    except Exception as err:  # CacheNotFound and corrupted caches: report, do not crash a listing
        raise VcriticError(f"could not read the model cache {cache}: {err}".splitlines()[0]) from None
    return {
        repo.repo_id: CachedRepo(
            repo=repo.repo_id,
            size=repo.size_on_disk,
            revisions=tuple(sorted(r.commit_hash for r in repo.revisions)),
            refs=tuple(sorted(repo.refs)),
            path=repo.repo_path,
        )
        for repo in info.repos
        if repo.repo_type == "model"
    }


def remove(name: str, revision: str | None = None) -> tuple[str, int]:
    """Delete ``name`` (a preset or repo id; only ``revision`` when given) from the cache; (repo, bytes freed)."""
    from huggingface_hub import scan_cache_dir

    preset = get_preset(name)
    repo = preset.repo if preset else name
    if preset is None and "/" not in name:
        raise unknown_model_error(name)
    cache = hub_cache_dir()
    folder = cache / repo_folder(repo)
    if not folder.is_dir():
        raise VcriticError(
            f"{repo} is not in the model cache ({cache})", hint="see what is cached with: vcritic models"
        )
    info = next((r for r in scan_cache_dir(cache).repos if r.repo_path == folder), None)
    revisions = [r.commit_hash for r in info.revisions] if info is not None else []
    if revision is not None:
        commit = _cached_commit(folder, revision)
        matches = [r for r in revisions if commit is not None and r == commit] or [
            r for r in revisions if r.startswith(revision)
        ]
        if not matches:
            raise VcriticError(
                f"revision {revision!r} of {repo} is not in the cache",
                hint="cached revisions: " + (", ".join(r[:12] for r in revisions) or "none"),
            )
        revisions = matches
    freed = 0
    if revisions:
        strategy = scan_cache_dir(cache).delete_revisions(*revisions)
        freed = strategy.expected_freed_size
        strategy.execute()
    if revision is None and folder.exists():  # partial downloads with no complete snapshot
        freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(cache / ".locks" / repo_folder(repo), ignore_errors=True)
    return repo, freed
