"""What a model folder may make vcritic load: no pickled adapter by default, no adapter outside a trained folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from vcritic.cli.app import main
from vcritic.errors import VcriticError
from vcritic.inference.loading import load_critic


class _Planted:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickled_copy(adapter: Path, target: Path) -> Path:
    """The same adapter as peft wrote it before safetensors: adapter_model.bin."""
    from safetensors.torch import load_file

    shutil.copytree(adapter, target)
    torch.save(load_file(target / "adapter_model.safetensors"), target / "adapter_model.bin")
    (target / "adapter_model.safetensors").unlink()
    return target


def test_a_pickled_adapter_is_refused_unless_allowed_then_loads_the_same(
    tiny_llava,
    lora_dir,
    tmp_path,
    sample_images,
):
    pickled = _pickled_copy(lora_dir, tmp_path / "pickled")
    with pytest.raises(VcriticError, match="only pickled weights") as err:
        load_critic(str(tiny_llava), adapter=pickled)
    assert "--allow-pickle" in err.value.hint and "\n" not in err.value.message
    images = [sample_images["camera"], sample_images["chelsea"]]
    expected = [s.mos for s in load_critic(str(tiny_llava), adapter=lora_dir).score(images)]
    allowed = load_critic(str(tiny_llava), adapter=pickled, allow_pickle=True)
    assert [s.mos for s in allowed.score(images)] == pytest.approx(expected, abs=1e-5)


def test_a_planted_adapter_never_runs_and_the_cli_says_so_in_one_line(
    tiny_llava,
    lora_dir,
    tmp_path,
    sample_images,
    capsys,
):
    planted = shutil.copytree(lora_dir, tmp_path / "planted")
    (planted / "adapter_model.safetensors").unlink()
    marker = tmp_path / "ran"
    torch.save(_Planted(marker), planted / "adapter_model.bin")
    image = tmp_path / "a.png"
    sample_images["camera"].save(image)
    code = main(["score", str(image), "-m", str(tiny_llava), "--adapter", str(planted), "-o", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code != 0 and "only pickled weights" in err and "Traceback" not in err
    assert not marker.exists()


def _trained_folder(tiny_llava, lora_dir, folder: Path, adapters) -> Path:
    folder.mkdir()
    manifest = {"format": 1, "base_model": str(tiny_llava), "adapters": adapters}
    (folder / "vcritic.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "symlinked-weights", "legacy-key"])
def test_vcritic_json_naming_an_adapter_outside_its_folder_is_refused(tiny_llava, lora_dir, tmp_path, how):
    outside = shutil.copytree(lora_dir, tmp_path / "elsewhere")
    folder = tmp_path / "trained"
    if how == "absolute":
        _trained_folder(tiny_llava, lora_dir, folder, [str(outside)])
    elif how == "dotdot":
        _trained_folder(tiny_llava, lora_dir, folder, ["../elsewhere"])
    elif how == "symlink":
        _trained_folder(tiny_llava, lora_dir, folder, ["previous/1"])
        (folder / "previous").mkdir()
        os.symlink(outside, folder / "previous" / "1")
    elif how == "symlinked-weights":
        _trained_folder(tiny_llava, lora_dir, folder, ["."])
        shutil.copy(outside / "adapter_config.json", folder)
        os.symlink(outside / "adapter_model.safetensors", folder / "adapter_model.safetensors")
    else:
        folder.mkdir()
        (folder / "vcritic.json").write_text(json.dumps({"base_model": str(tiny_llava), "adapter": str(outside)}))
    with pytest.raises(VcriticError, match="outside") as err:
        load_critic(str(folder))
    assert "\n" not in err.value.message


def test_adapters_inside_the_folder_still_load(tiny_llava, lora_dir, tmp_path, sample_images):
    folder = _trained_folder(tiny_llava, lora_dir, tmp_path / "trained", ["previous/1"])
    shutil.copytree(lora_dir, folder / "previous" / "1")
    images = [sample_images["camera"]]
    expected = [s.mos for s in load_critic(str(tiny_llava), adapter=lora_dir).score(images)]
    assert [s.mos for s in load_critic(str(folder)).score(images)] == pytest.approx(expected, abs=1e-5)
