"""Presets, the model cache and downloads, against a local stand-in for the hub (tests/support/hub_server.py)."""

from __future__ import annotations

import errno
import hashlib
import socket
from pathlib import Path

import pytest

from vcritic.base.home import hub_cache_dir, vcritic_home
from vcritic.errors import VcriticError
from vcritic.model import hub, presets
from vcritic.model.presets import PRESETS, Preset
from vcritic.model.readout_specs import VCRITIC


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dead_endpoint() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def go_offline(monkeypatch, fake_hub=None) -> None:
    """No network and HF_HUB_OFFLINE=1; the fake hub (if any) stops answering."""
    if fake_hub is not None:
        fake_hub.stop()
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def tiny_repo(fake_hub, tiny_llava):
    """The tiny LLaVA checkpoint served as tiny/llava, with a stale pickled copy of the weights beside it."""
    files = {p.name: p.read_bytes() for p in tiny_llava.iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"pickled duplicate of the weights"
    files["onnx/model.onnx"] = b"not needed for loading"
    files["README.md"] = b"# tiny"
    sha = fake_hub.add_repo("tiny/llava", files)
    return fake_hub, sha


# --- presets and home ------------------------------------------------------------------------------------------------


def test_presets_are_complete_and_the_default_exists():
    assert presets.DEFAULT_PRESET in PRESETS
    assert PRESETS[presets.DEFAULT_PRESET].license == "Apache-2.0"
    for name, preset in PRESETS.items():
        assert name == preset.name == name.lower()
        assert preset.repo.count("/") == 1 and preset.family and preset.readout and preset.license and preset.note
        assert preset.pinned or preset.revision == "main"
    families = {p.family for p in PRESETS.values()}
    assert {"instructblip", "qwen2_5_vl"} <= families  # paper-faithful and modern bases


def test_unknown_names_get_a_did_you_mean():
    with pytest.raises(VcriticError) as err:
        hub.resolve_model("qwen2.5-vl7b")
    assert "unknown model" in err.value.message
    assert "did you mean qwen2.5-vl-7b?" in err.value.hint
    assert presets.suggest("completely-different") is None
    assert presets.get_preset("Qwen2.5-VL-7B") is PRESETS["qwen2.5-vl-7b"]


def test_paths_and_bad_ids_are_not_sent_to_the_hub(tmp_path):
    with pytest.raises(VcriticError, match="no such checkpoint directory"):
        hub.resolve_model(str(tmp_path / "missing"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(VcriticError, match="is a file"):
        hub.resolve_model(str(tmp_path / "file.txt"))
    with pytest.raises(VcriticError, match="not a valid hub repo id"):
        hub.resolve_model("org/na me")
    assert hub.resolve_model(str(tmp_path)) == tmp_path
    # A folder has no revisions: --revision with one was silently ignored.
    with pytest.raises(VcriticError, match="--revision v2 was given, but .* is a local folder"):
        hub.resolve_model(str(tmp_path), "v2")


def test_home_and_cache_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("VCRITIC_HOME", str(tmp_path / "vc"))
    assert vcritic_home() == tmp_path / "vc"
    assert hub_cache_dir() == tmp_path / "vc" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "shared"))
    assert hub_cache_dir() == tmp_path / "shared"
    monkeypatch.delenv("VCRITIC_HOME")
    assert vcritic_home().name == "vcritic"  # the platform's user cache folder


def test_file_selection_prefers_safetensors_and_refuses_pickle_only():
    listing = {
        "config.json": 10,
        "model-00001-of-00002.safetensors": 100,
        "model-00002-of-00002.safetensors": 100,
        "pytorch_model.bin": 200,
        "tokenizer.model": 5,
        "chat_template.jinja": 1,
        "onnx/model.safetensors": 300,
        ".gitattributes": 1,
        "README.md": 1,
    }
    chosen = hub.select_files(listing, label="x", allow_pickle=True)
    assert set(chosen) == {
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer.model",
        "chat_template.jinja",
    }
    pickle_only = {"config.json": 1, "pytorch_model.bin": 2}
    with pytest.raises(VcriticError, match="only pickled weights") as err:
        hub.select_files(pickle_only, label="x", allow_pickle=False)
    assert "--allow-pickle" in err.value.hint
    assert set(hub.select_files(pickle_only, label="x", allow_pickle=True)) == {"config.json", "pytorch_model.bin"}
    with pytest.raises(VcriticError, match="no model weights"):
        hub.select_files({"config.json": 1, "model.gguf": 3}, label="x", allow_pickle=True)


# --- downloading -----------------------------------------------------------------------------------------------------


def test_download_fetches_only_what_loading_needs(tiny_repo, tiny_llava):
    fake, sha = tiny_repo
    target, path, fetched = hub.download("tiny/llava")
    assert fetched and path == hub_cache_dir() / "models--tiny--llava" / "snapshots" / sha
    assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in tiny_llava.iterdir())
    assert sha256(path / "model.safetensors") == sha256(tiny_llava / "model.safetensors")
    assert not fake.requested("GET", "pytorch_model.bin") and not fake.requested("GET", "onnx/")
    assert (hub_cache_dir() / "models--tiny--llava" / "refs" / "main").read_text() == sha
    assert hub.cached_snapshot("tiny/llava") == path == hub.cached_snapshot("tiny/llava", sha)

    # A second download of a branch asks the hub for the commit, but fetches no file again.
    before = len(fake.requested("GET", "/resolve/"))
    assert hub.download("tiny/llava")[1:] == (path, False)
    assert len(fake.requested("GET", "/resolve/")) == before


def test_scores_from_the_cache_with_the_network_off(tiny_repo, monkeypatch, sample_images):
    from vcritic.inference.loading import load_critic

    fake, _ = tiny_repo
    online = load_critic("tiny/llava")
    expected = [s.mos for s in online.score([sample_images["astronaut"], sample_images["chelsea"]])]
    go_offline(monkeypatch, fake)
    requests_before = len(fake.requests)

    critic = load_critic("tiny/llava")
    scores = critic.score([sample_images["astronaut"], sample_images["chelsea"]])
    assert [s.mos for s in scores] == pytest.approx(expected)
    assert all(0 <= s.mos <= 100 for s in scores)
    assert len(fake.requests) == requests_before

    # Network down but HF_HUB_OFFLINE unset: a cached model still needs no request at all.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert load_critic("tiny/llava").score([sample_images["coffee"]])[0].mos >= 0


def test_offline_miss_fails_at_once_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    with pytest.raises(VcriticError) as err:
        hub.resolve_model("tiny/not-downloaded")
    assert err.value.hint is None and "\n" not in err.value.message
    assert "tiny/not-downloaded" in err.value.message and "offline" in err.value.message
    assert err.value.message.endswith("fetch it first with: vcritic download tiny/not-downloaded")

    with pytest.raises(VcriticError) as err:
        hub.resolve_model("qwen2.5-vl-7b", revision="v1")
    assert err.value.message.endswith("vcritic download qwen2.5-vl-7b --revision v1")


def test_unreachable_hub_miss_names_the_model_and_the_command(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    endpoint = dead_endpoint()
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(VcriticError) as err:
        hub.resolve_model("tiny/not-downloaded")
    assert f"cannot reach the hub at {endpoint}" in err.value.message and "\n" not in err.value.message
    assert err.value.message.endswith("when online, fetch it with: vcritic download tiny/not-downloaded")


def test_an_interrupted_file_resumes_with_a_range_request(tiny_repo, tiny_llava, monkeypatch):
    fake, _ = tiny_repo
    # Small chunks so the client has written part of the file when the connection drops.
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 4096)
    fake.cut_once.add("model.safetensors")
    _, path, _ = hub.download("tiny/llava")
    gets = fake.requested("GET", "model.safetensors")
    assert len(gets) == 2 and gets[0][2] is None and gets[1][2].startswith("bytes=")
    assert int(gets[1][2].removeprefix("bytes=").rstrip("-")) > 0
    assert sha256(path / "model.safetensors") == sha256(tiny_llava / "model.safetensors")


def test_a_failed_download_continues_where_it_stopped(tiny_repo, tiny_llava):
    fake, _ = tiny_repo
    fake.fail_once.add("model.safetensors")
    with pytest.raises(VcriticError, match="hub answered 503") as err:
        hub.download("tiny/llava")
    assert "continue where it stopped" in err.value.hint
    assert hub.cached_snapshot("tiny/llava") is None  # incomplete: not usable

    _, path, fetched = hub.download("tiny/llava")
    assert fetched and sha256(path / "model.safetensors") == sha256(tiny_llava / "model.safetensors")
    for name in ("/config.json", "/tokenizer.json"):  # finished files were not fetched twice
        assert len(fake.requested("GET", name)) == 1
    assert len(fake.requested("GET", "model.safetensors")) == 2


def test_pickle_only_repos_are_refused(fake_hub):
    fake_hub.add_repo("old/pickled", {"config.json": b"{}", "pytorch_model.bin": b"\x80\x04 pickle"})
    with pytest.raises(VcriticError, match="only pickled weights") as err:
        hub.resolve_model("old/pickled")
    assert "--allow-pickle" in err.value.hint
    assert not fake_hub.requested(contains="/resolve/")  # refused before anything was fetched

    path = hub.resolve_model("old/pickled", allow_pickle=True)
    assert (path / "pytorch_model.bin").read_bytes() == b"\x80\x04 pickle"
    requests = len(fake_hub.requests)
    with pytest.raises(VcriticError, match="only pickled weights"):  # cached, but still refused without the flag
        hub.resolve_model("old/pickled")
    assert len(fake_hub.requests) == requests


def test_gated_missing_and_bad_revision_get_clear_messages(fake_hub):
    fake_hub.add_repo("org/gated", {"config.json": b"{}", "model.safetensors": b"x"}, gated=True)
    fake_hub.add_repo("org/model", {"config.json": b"{}", "model.safetensors": b"x"})
    with pytest.raises(VcriticError, match="org/gated is gated: accept its terms") as err:
        hub.download("org/gated")
    assert "HF_TOKEN" in err.value.hint
    with pytest.raises(VcriticError, match="org/missing was not found on the hub"):
        hub.download("org/missing")
    with pytest.raises(VcriticError, match="revision 'v9' was not found in org/model"):
        hub.download("org/model", revision="v9")


def test_a_full_disk_is_reported_before_and_during_download(tiny_repo, monkeypatch):
    fake, _ = tiny_repo
    with monkeypatch.context() as patch:
        patch.setattr(hub, "_free_bytes", lambda directory: 1000)
        with pytest.raises(VcriticError, match="not enough disk space for tiny/llava"):
            hub.download("tiny/llava")
    assert not fake.requested(contains="/resolve/")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("huggingface_hub.file_download.http_get", disk_full)
    with pytest.raises(VcriticError, match="the disk is full") as err:
        hub.download("tiny/llava")
    assert "VCRITIC_HOME" in err.value.hint


def test_presets_and_the_default_download_on_first_use(tiny_repo, monkeypatch, capsys):
    from vcritic.inference.loading import load_critic

    fake, sha = tiny_repo
    preset = Preset("tiny", "tiny/llava", sha, "llava", VCRITIC, "Apache-2.0", 0.001, "test preset")
    monkeypatch.setitem(PRESETS, "tiny", preset)
    monkeypatch.setattr(presets, "DEFAULT_PRESET", "tiny")
    monkeypatch.setattr(presets, "CPU_DEFAULT_PRESET", "tiny")  # the default without CUDA

    critic = load_critic(None)
    assert critic.source == "tiny"
    notice = capsys.readouterr().err
    assert "tiny (tiny/llava) is not in the local cache; downloading it" in notice
    assert not (hub_cache_dir() / "models--tiny--llava" / "refs" / "main").exists()  # fetched by commit

    load_critic("tiny")
    assert "downloading" not in capsys.readouterr().err
    # The preset's repo id means the preset's pinned weights: same snapshot, from the cache.
    go_offline(monkeypatch, fake)
    assert hub.resolve_model("tiny/llava") == hub.resolve_model("tiny") == hub.cached_snapshot("tiny/llava", sha)


def test_remove_frees_the_cache(tiny_repo):
    hub.download("tiny/llava")
    assert "tiny/llava" in hub.cached_repos()
    repo, freed = hub.remove("tiny/llava")
    assert repo == "tiny/llava" and freed > 100_000
    assert hub.cached_repos() == {} and not (hub_cache_dir() / "models--tiny--llava").exists()
    with pytest.raises(VcriticError, match="not in the model cache"):
        hub.remove("tiny/llava")


def test_one_progress_bar_for_a_download(tiny_repo, capsys):
    hub.download("tiny/llava", progress=True)
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith("Downloading tiny/llava: 100%") and "B/s" in final
    assert "Reconstruct" not in err and "Fetching" not in err and "Download complete" not in err
