"""--max-pixels / --image-size: what each family accepts, what the model then sees, and the documented token count."""

from __future__ import annotations

import csv
import io

import pytest
from PIL import Image
from support.families import HAS_TORCHVISION
from typer.testing import CliRunner

from vcritic.cli.app import app
from vcritic.errors import VcriticError

needs_torchvision = pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")


def _qwen_processor(tiny_models):
    from vcritic.inference.loading import _load_processor

    return _load_processor(tiny_models("qwen2_5_vl"), trust_remote_code=False)


@needs_torchvision
def test_default_qwen25_budget_gives_999_tokens_for_1024x768(tiny_models):
    """The figure in docs/guides/scoring.md: Qwen2.5-VL's released preprocessor (min 3136, max 12845056 pixels) on a
    KonIQ-size image resizes it to 1036x756 (multiples of 28) = 74x54 patches of 14 px, merged 2x2 -> 999 tokens."""
    from vcritic.model.resolution import configure_resolution, visual_tokens

    processor = _qwen_processor(tiny_models)
    configure_resolution(processor, max_pixels=12845056)
    assert visual_tokens(processor, 1024, 768) == 999
    grid = processor.image_processor(images=[Image.new("RGB", (1024, 768))], return_tensors="pt")["image_grid_thw"]
    assert grid.tolist() == [[1, 54, 74]]
    configure_resolution(processor, max_pixels=448 * 448)
    assert visual_tokens(processor, 1024, 768) < 256


@needs_torchvision
def test_qwen_image_size_makes_every_image_the_same_square(tiny_models, sample_images):
    from vcritic.inference.encoder import Encoder, Family
    from vcritic.model.resolution import configure_resolution, visual_tokens
    from vcritic.readout.prompts import QUALITY

    processor = _qwen_processor(tiny_models)
    configure_resolution(processor, image_size=56)
    encoder = Encoder(processor, Family.detect("qwen2_5_vl", processor))
    for name in ("rocket", "coffee"):  # portrait and landscape
        item = encoder.encode(QUALITY, [sample_images[name].convert("RGB")])
        assert item["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert visual_tokens(processor, 1024, 768) == 4
    with pytest.raises(VcriticError, match="not a multiple of 28"):
        configure_resolution(_qwen_processor(tiny_models), image_size=100)
    with pytest.raises(VcriticError, match="below this processor's minimum"):
        configure_resolution(_qwen_processor(tiny_models), max_pixels=10)


@needs_torchvision
def test_score_cli_max_pixels_changes_what_qwen_sees(tiny_models, image_dir, tmp_path):
    runner = CliRunner()
    model = str(tiny_models("qwen2_5_vl"))
    results = {}
    for budget in ("784", "4704"):
        out = tmp_path / f"scores-{budget}.csv"
        args = ["score", str(image_dir), "--model", model, "--max-pixels", budget, "-o", str(out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        results[budget] = {row["path"]: float(row["mos"]) for row in csv.DictReader(io.StringIO(out.read_text()))}
    assert results["784"].keys() == results["4704"].keys()
    # One token vs six per image: the readout must move.
    assert any(abs(results["784"][p] - results["4704"][p]) > 1e-6 for p in results["784"])


def test_fixed_size_families_refuse_what_they_cannot_do(tiny_llava, image_dir):
    runner = CliRunner()
    base = ["score", str(image_dir / "astronaut.png"), "--model", str(tiny_llava)]
    result = runner.invoke(app, [*base, "--max-pixels", "50000"])
    assert isinstance(result.exception, VcriticError)
    assert result.exception.message == "--max-pixels does not apply: CLIPImageProcessor resizes every image to 32x32"
    result = runner.invoke(app, [*base, "--image-size", "224"])
    assert isinstance(result.exception, VcriticError)
    assert "its vision tower takes 32x32 images" in str(result.exception)
    assert result.exception.hint == "use --image-size 32 or leave it out"
    result = runner.invoke(app, [*base, "--image-size", "32"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["score", "compare", "bench", "describe", "chat", "rank", "train"])
def test_a_huge_resolution_is_refused_in_one_line_by_every_command_before_any_work(command, tmp_path, capsys):
    """Was accepted: --image-size 100000 asks for 12.7 million visual tokens per image (and a model download or a
    dataset scan first). The nonexistent input shows nothing else was looked at."""
    from vcritic.cli.app import main

    cases = (("--image-size", "100000", "1 to 3584"), ("--max-pixels", "20000000", "1 to 12845056"))
    for flag, value, allowed in cases:
        assert main([command, str(tmp_path / "nothing-here"), flag, value]) == 2
        err = capsys.readouterr().err
        assert err.splitlines()[0] == f"Error: {flag} {value} is out of range: use {allowed}", err
        assert "Traceback" not in err


def test_the_same_range_holds_for_the_api_vcritic_json_and_the_training_config(tiny_llava):
    from vcritic.inference.loading import load_critic
    from vcritic.model.resolution import chosen_resolution
    from vcritic.training.config import load_config

    with pytest.raises(VcriticError, match=r"^--image-size 100000 is out of range: use 1 to 3584"):
        load_critic(tiny_llava, image_size=100000)
    with pytest.raises(VcriticError, match="'resolution' must hold max_pixels .* not {'max_pixels': 99999999"):
        chosen_resolution(None, None, {"resolution": {"max_pixels": 99999999, "image_size": None}})
    with pytest.raises(VcriticError, match="config key 'image_size': 100000 must be from 1 to 3584"):
        load_config(1, None, {"image_size": 100000})
    assert chosen_resolution(None, 3584, None).image_size == 3584  # the top of the range is allowed
