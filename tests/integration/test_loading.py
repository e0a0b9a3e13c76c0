"""load_critic on real saved checkpoints: LoRA adapters, vcritic.json directories, safety refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from support.adapters import write_lora

from vcritic.errors import VcriticError
from vcritic.inference.loading import load_critic


def test_adapter_changes_scores_and_merging_does_not(tiny_llava, lora_dir, sample_images):
    images = [sample_images["astronaut"], sample_images["coffee"]]
    base = [s.mos for s in load_critic(str(tiny_llava)).score(images)]
    merged = [s.mos for s in load_critic(str(tiny_llava), adapter=lora_dir).score(images)]
    unmerged = [s.mos for s in load_critic(str(tiny_llava), adapter=lora_dir, merge_adapter=False).score(images)]
    assert max(abs(a - b) for a, b in zip(base, merged, strict=True)) > 1e-3
    assert merged == pytest.approx(unmerged, abs=1e-4)


def test_trained_directory_with_manifest_loads_base_plus_adapter(tiny_llava, lora_dir, tmp_path, sample_images):
    trained = tmp_path / "trained"
    shutil.copytree(lora_dir, trained)
    manifest = {"format": 1, "base_model": str(tiny_llava), "adapter": ".", "trained_on": ["koniq10k"]}
    (trained / "vcritic.json").write_text(json.dumps(manifest))
    critic = load_critic(str(trained))
    direct = load_critic(str(tiny_llava), adapter=lora_dir)
    image = sample_images["chelsea"]
    assert critic.score([image])[0].mos == pytest.approx(direct.score([image])[0].mos, abs=1e-5)
    assert critic.info["trained_on"] == ["koniq10k"]


def test_broken_manifest_is_a_user_error(tmp_path):
    (tmp_path / "vcritic.json").write_text("{not json")
    with pytest.raises(VcriticError, match="not valid JSON"):
        load_critic(str(tmp_path))
    (tmp_path / "vcritic.json").write_text(json.dumps({"adapter": "."}))
    with pytest.raises(VcriticError, match="base_model"):
        load_critic(str(tmp_path))


def test_adapter_folder_without_config_is_refused(tiny_llava, tmp_path):
    with pytest.raises(VcriticError, match="adapter_config.json"):
        load_critic(str(tiny_llava), adapter=tmp_path)


def test_pickled_weights_are_refused_unless_allowed(tiny_llava, tmp_path, sample_images):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    pickled = tmp_path / "pickled"
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava)
    model.save_pretrained(pickled)
    AutoProcessor.from_pretrained(tiny_llava).save_pretrained(pickled)
    # transformers 5 only writes safetensors; old checkpoints on the hub still ship a pickled state dict.
    for weights in pickled.glob("*.safetensors"):
        weights.unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    assert not list(pickled.glob("*.safetensors")), "the fixture must hold only pickled weights"
    with pytest.raises(VcriticError, match="pickled") as info:
        load_critic(str(pickled))
    assert "--allow-pickle" in info.value.hint
    critic = load_critic(str(pickled), allow_pickle=True)
    assert 0 <= critic.score([sample_images["camera"]])[0].mos <= 100


def test_text_only_checkpoint_is_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from vcritic.testing import train_tokenizer

    tokenizer = train_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(VcriticError, match="image"):
        load_critic(str(tmp_path))


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(VcriticError, match="no such checkpoint directory"):
        load_critic(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"", id="0-byte"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:8] + b"{not json" + data[17:], id="bad-header"),
        pytest.param(lambda data: (10**12).to_bytes(8, "little") + data[8:], id="header-length"),
    ],
)
def test_damaged_safetensors_is_one_line_naming_the_file(tiny_llava, tmp_path, damage):
    copy = shutil.copytree(tiny_llava, tmp_path / "model")
    weights = copy / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(VcriticError) as caught:
        load_critic(str(copy))
    assert caught.value.message.startswith(f"{weights} is not a readable safetensors file")
    assert "\n" not in str(caught.value) and "download it again" in caught.value.hint


def test_adapter_for_another_base_model_is_refused(tiny_llava, tiny_models, tmp_path, recwarn):
    from vcritic.testing import build_llava

    # Same family, other sizes: peft itself fails on the shapes; we name both models.
    wider = write_lora(build_llava(tmp_path / "wide", hidden=64), tmp_path / "wide-lora")
    with pytest.raises(VcriticError, match=r"it was made for .*wide\): size mismatch for "):
        load_critic(str(tiny_llava), adapter=wider)
    # Another family whose layer names partly match: peft only warned and the run went on; now it is refused.
    other = write_lora(tiny_models("blip2"), tmp_path / "blip2-lora")
    with pytest.raises(VcriticError, match=r"does not fit the model .* \(it was made for .*blip2\)"):
        load_critic(str(tiny_llava), adapter=other)
    assert not [w for w in recwarn if "missing adapter keys" in str(w.message)]


def test_corrupt_adapter_weights_are_one_line(tiny_llava, lora_dir, tmp_path):
    copy = shutil.copytree(lora_dir, tmp_path / "lora")
    (copy / "adapter_model.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(VcriticError, match="adapter_model.safetensors is not a readable safetensors file, 5 bytes"):
        load_critic(str(tiny_llava), adapter=copy)


def test_loading_onto_one_device_through_a_device_map_keeps_adapters_and_scores(tiny_llava, tmp_path, sample_images):
    """What a single GPU gets (``device_map={"": device}``, weights loaded straight onto it), proven on the CPU: a
    LoRA adapter with a fully trained module (peft's modules_to_save), merged or not, lands on the same device and
    scores as the default path does."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(2)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["multi_modal_projector"],
                        init_lora_weights=False)  # fmt: skip
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_llava), config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    model.save_pretrained(tmp_path / "adapter")
    images = [sample_images["astronaut"], sample_images["rocket"]]
    base = [s.mos for s in load_critic(str(tiny_llava)).score(images)]
    for merge in (True, False):
        default = load_critic(str(tiny_llava), adapter=tmp_path / "adapter", merge_adapter=merge)
        placed = load_critic(str(tiny_llava), adapter=tmp_path / "adapter", merge_adapter=merge, device_map={"": "cpu"})
        assert {p.device.type for p in placed.model.parameters()} == {"cpu"}
        assert any("modules_to_save" in n for n, _ in placed.model.named_parameters()) == (not merge)
        scores = [s.mos for s in placed.score(images)]
        assert scores == pytest.approx([s.mos for s in default.score(images)], abs=1e-5)
        assert max(abs(a - b) for a, b in zip(scores, base, strict=True)) > 1e-3
