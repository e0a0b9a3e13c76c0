"""The Python API (paths, PIL images, lists; plain dataclasses), parsing --tasks, and describe's command-line errors
(the --tasks and describe command lines end to end: tests/e2e/test_tasks_cli.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vcritic
from vcritic.cli.app import main
from vcritic.datasets import ATTRIBUTES
from vcritic.errors import VcriticError
from vcritic.pipeline.scoring import score_columns
from vcritic.readout.tasks import parse_tasks

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def critic(tiny_models):
    return vcritic.load_critic(str(tiny_models("llava")), device="cpu")


# -- tasks -------------------------------------------------------------------------------------------------------
def test_parse_tasks():
    assert parse_tasks("mos") == ("mos",)
    assert parse_tasks("authenticity, MOS") == ("mos", "authenticity")  # canonical (column) order
    assert (
        parse_tasks("all")
        == parse_tasks(["attributes", "authenticity", "mos"])
        == ("mos", "attributes", "authenticity")
    )
    assert parse_tasks("none") == () and parse_tasks(None) == ("mos",)
    with pytest.raises(VcriticError, match="unknown task 'atributes'") as caught:
        parse_tasks("mos,atributes")
    assert caught.value.hint.startswith("did you mean 'attributes'?")
    with pytest.raises(VcriticError, match="unknown task 'nonee'") as caught:
        parse_tasks("nonee")
    assert caught.value.hint.startswith("did you mean 'none'?") and "describe also takes none" in caught.value.hint
    for empty in ("", " , ,"):  # an empty --tasks is a mistake, not "no read-out"
        with pytest.raises(VcriticError, match="--tasks is empty"):
            parse_tasks(empty)


def test_score_columns_extend_the_one_layout():
    assert score_columns() == ["path", "mos", "mos_std", "scale", "error"]
    every = score_columns(("mos", "attributes", "authenticity"))
    assert every[:3] == ["path", "mos", "mos_std"] and every[-3:] == ["p_ai_generated", "scale", "error"]
    assert every[3:13] == [c for a in ATTRIBUTES for c in (a, f"{a}_std")]


# -- Python API --------------------------------------------------------------------------------------------------
def test_public_names_and_a_light_import():
    public = {"load_critic", "Critic", "Score", "Comparison", "Description", "Ranking", "RankedImage", "VcriticError"}
    assert public <= set(dir(vcritic))
    code = "import sys, vcritic; vcritic.Score; vcritic.VcriticError; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_load_critic_without_a_model_is_the_cli_default(tiny_llava, monkeypatch):
    from vcritic.inference.loading import default_model

    with pytest.raises(VcriticError, match=rf"{default_model()} .* not in the local cache"):
        vcritic.load_critic()  # the default preset (Q-ReAlign Lite with CUDA, Mini without); the hub is offline
    monkeypatch.setenv("VCRITIC_MODEL", str(tiny_llava))
    assert vcritic.load_critic(device="cpu").source == str(tiny_llava)


def test_score_accepts_a_path_a_pil_image_or_a_list_of_either(critic, image_dir, sample_images):
    path = image_dir / "astronaut.png"
    image = sample_images["astronaut"]
    by_path = critic.score(str(path), tasks="all")
    assert isinstance(by_path, vcritic.Score)
    assert critic.score(path, tasks="all") == by_path  # pathlib.Path too
    by_image = critic.score(image, tasks="all")
    assert by_image.mos == pytest.approx(by_path.mos, abs=1e-4)
    assert by_image.attributes == pytest.approx(by_path.attributes, abs=1e-4)
    mixed = critic.score([image, str(image_dir / "camera.png")], tasks="mos,authenticity")
    assert isinstance(mixed, list) and len(mixed) == 2
    assert mixed[0].mos == pytest.approx(by_path.mos, abs=1e-4) and mixed[0].attributes == {}
    alone = critic.score(sample_images["camera"], tasks="authenticity")
    assert mixed[1].p_ai_generated == pytest.approx(alone.p_ai_generated, abs=1e-6)

    comparison = critic.compare(str(path), sample_images["coffee"])
    assert isinstance(comparison, vcritic.Comparison) and 0 < comparison.p_a_better < 1
    assert comparison.better in ("a", "b")
    both = critic.compare([path, path], [sample_images["coffee"], image])
    assert both[0].p_a_better == pytest.approx(comparison.p_a_better, abs=1e-6)
    assert both[1].p_a_better == pytest.approx(0.5, abs=1e-6) and both[1].better == "tie"

    description = critic.describe([str(path)], tasks="attributes", max_new_tokens=4)[0]
    assert isinstance(description, vcritic.Description) and description.text
    assert description.score.attributes == pytest.approx(by_path.attributes, abs=1e-4)


def test_api_input_errors_are_vcritic_errors(critic, tmp_path):
    with pytest.raises(VcriticError, match=r"missing.png: file not found"):
        critic.score(tmp_path / "missing.png")
    with pytest.raises(VcriticError, match="cannot read an image from a int"):
        critic.score(3)
    with pytest.raises(VcriticError, match="no images given"):
        critic.score([])
    with pytest.raises(VcriticError, match="compare needs two images"):
        critic.compare(tmp_path / "a.png")
    with pytest.raises(VcriticError, match="two lists of the same length"):
        critic.compare([tmp_path / "a.png", tmp_path / "b.png"], [tmp_path / "a.png"])
    with pytest.raises(VcriticError, match="needs at least one task"):
        critic.score(tmp_path, tasks="none")


def test_readme_python_example_runs(tiny_llava, image_dir, monkeypatch):
    """The README's Python API example, run as written with the default model pointed at a tiny one."""
    text = README.read_text()
    example = re.search(r"<!-- python-api-example -->\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.setenv("VCRITIC_MODEL", str(tiny_llava))
    monkeypatch.chdir(image_dir.parent)
    for name in ("photo.jpg", "a.jpg", "b.jpg"):
        sample = next(image_dir.glob("*.jpg"))
        (image_dir.parent / name).write_bytes(sample.read_bytes())
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert isinstance(namespace["score"], vcritic.Score)


# -- command line ------------------------------------------------------------------------------------------------


def test_describe_cli_bad_files_and_tasks(tiny_llava, image_dir, capsys):
    broken = image_dir / "zz_broken.jpg"
    broken.write_bytes(b"not an image")
    code = main(["describe", str(image_dir / "camera.png"), str(broken), "-m", str(tiny_llava), "--json",
                 "--max-new-tokens", "2", "--tasks", "none"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 3
    objects = [json.loads(line) for line in out.out.splitlines()]
    assert objects[1] == {"path": str(broken), "text": None, "error": "not an image, or a format Pillow cannot read"}
    assert set(objects[0]) == {"path", "text", "error"}
    assert main(["score", str(image_dir), "-m", str(tiny_llava), "--tasks", "mos,sharpness"]) == 2
    assert capsys.readouterr().err.startswith("Error: unknown task 'sharpness'")
