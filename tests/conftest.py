"""Shared fixtures: tiny random checkpoints (built once per session), sample images, an isolated vcritic home.

The tiers are folders: unit/ (no model), integration/ (tiny models in this process), e2e/ (the CLI end to end and
launched processes; every test there is marked ``slow`` here). Helpers the tests import live in the support package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from vcritic.testing import build_tiny

E2E = Path(__file__).parent / "e2e"


@pytest.hookimpl(tryfirst=True)  # before -m deselects, so -m "not slow" leaves tests/e2e out
def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e is ``slow``; tests marked ``gpu`` are skipped where torch sees no CUDA device."""
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.slow)
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """family -> directory of a tiny random checkpoint, built on first use and shared by the session."""
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny-models")

    def get(family: str) -> Path:
        if family not in cache:
            cache[family] = build_tiny(family, root / family)
        return cache[family]

    return get


@pytest.fixture(scope="session")
def tiny_llava(tiny_models) -> Path:
    return tiny_models("llava")


@pytest.fixture(scope="module")
def critics(tiny_models):
    """family -> a loaded tiny critic, shared by the tests of one module."""
    from vcritic.inference.loading import load_critic

    loaded = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = load_critic(str(tiny_models(family)), device="cpu")
        return loaded[family]

    return get


@pytest.fixture
def one_torch_thread():
    """Tiny models train ~50x faster on one thread when the CPU is shared (intra-op threads wait on each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sample_images():
    """Natural images shipped inside scikit-image (no download), as PIL images of different sizes and modes."""
    from PIL import Image
    from skimage import data

    return {
        "astronaut": Image.fromarray(data.astronaut()),  # 512x512 RGB
        "chelsea": Image.fromarray(data.chelsea()),  # 451x300 RGB
        "coffee": Image.fromarray(data.coffee()),  # 600x400 RGB
        "camera": Image.fromarray(data.camera()),  # greyscale
        "logo": Image.fromarray(data.logo()),  # RGBA
        "rocket": Image.fromarray(data.rocket()),  # 427x640 portrait
    }


@pytest.fixture
def image_dir(tmp_path, sample_images):
    """A folder of real image files in several formats."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (name, image) in enumerate(sample_images.items()):
        suffix = ".png" if image.mode in ("RGBA", "L") else (".jpg" if i % 2 else ".png")
        image.save(folder / f"{name}{suffix}")
    return folder


@pytest.fixture
def runner():
    """Typer's in-process runner for the CLI."""
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Every public IQA dataset in miniature, in its official layout (tests/support/dataset_fixtures.py)."""
    from support.dataset_fixtures import build_all

    root = tmp_path_factory.mktemp("iqa")
    build_all(root)
    return root


@pytest.fixture
def pair_data(tmp_path, sample_images):
    """Stage-1 training data: (pristine, degraded) pairs of natural-picture crops, with its data.json."""
    import json

    from support.training import write_pairs

    data = write_pairs(tmp_path / "data", [sample_images[k] for k in ("astronaut", "chelsea", "coffee", "rocket")])
    (data / "data.json").write_text(json.dumps({"format": 1, "stage": 1, "seed": 0, "datasets": ["synthetic"]}))
    return data


@pytest.fixture(scope="session")
def lora_dir(tiny_llava, tmp_path_factory):
    """A real peft LoRA adapter for the tiny LLaVA, with non-zero weights so it changes the scores. Shared by the
    session: a test that changes it works on a copy."""
    from support.adapters import write_lora

    return write_lora(tiny_llava, tmp_path_factory.mktemp("lora"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own vcritic home and an offline hub, so nothing touches the user's cache or network."""
    home = tmp_path_factory.mktemp("vcritic-home")
    monkeypatch.setenv("VCRITIC_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("VCRITIC_NO_PROGRESS", "1")
    monkeypatch.delenv("VCRITIC_MODEL", raising=False)
    # A test that reaches for the real hub by mistake fails at once instead of waiting on the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake_hub(monkeypatch):
    """A stand-in for the Hugging Face Hub on 127.0.0.1 (tests/support/hub_server.py), online for this test: HF_ENDPOINT
    points at it. Add repos with ``fake_hub.add_repo("org/name", folder)``."""
    import huggingface_hub.constants
    from support.hub_server import FakeHub

    hub = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # huggingface_hub read HF_HUB_OFFLINE when it was imported; the test run may have it set.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield hub
    hub.stop()


# CI runs the property tests on a fixed set of examples, so a run's verdict does not depend on the draw; at a desk
# they explore new examples every run.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
