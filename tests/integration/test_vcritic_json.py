"""vcritic.json: what training writes (write_manifest) is what loading reads back (load_critic)."""

from __future__ import annotations

import json

import pytest
import torch

from vcritic.inference.loading import load_critic
from vcritic.model.resolution import Resolution, native_size
from vcritic.model.vcritic_json import (
    VCRITIC_JSON,
    manifest_adapters,
    manifest_base,
    manifest_stages,
    manifest_trained_on,
    write_manifest,
)


def test_a_written_manifest_loads_back_through_load_critic(tiny_llava, tmp_path, sample_images):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    # A trained directory as vcritic train leaves it: a peft adapter (non-zero, so it changes scores; in a sub-folder,
    # so only the "adapters" entry finds it), the processor, and vcritic.json naming the base.
    torch.manual_seed(1)
    base = AutoModelForImageTextToText.from_pretrained(tiny_llava)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    trained = tmp_path / "trained"
    get_peft_model(base, lora).save_pretrained(trained / "previous" / "1")
    processor = AutoProcessor.from_pretrained(tiny_llava)
    processor.save_pretrained(trained)
    size = native_size(processor.image_processor)
    path = write_manifest(
        trained,
        base_model=str(tiny_llava.resolve()),
        base_revision=None,
        adapters=["previous/1"],
        stages=[1, 2],
        data=tmp_path / "data",
        trained_on=["koniq10k", "spaq"],
        config={"steps": 3},
        resolution=Resolution(None, size),
        readout="q-realign",
        trained_tasks=["mos", "attributes"],
    )
    assert path == trained / VCRITIC_JSON and not list(trained.glob(".*vcritic-new"))  # atomic: no temporary left

    critic = load_critic(trained)  # no flag: everything comes from vcritic.json
    written = json.loads(path.read_text())
    assert critic.info == written
    assert manifest_base(written) == (str(tiny_llava.resolve()), None) and manifest_adapters(written) == ["previous/1"]
    assert (written["stage"], manifest_stages(written)) == (2, [1, 2])
    assert manifest_trained_on(written) == ["koniq10k", "spaq"]
    assert (critic.judge.spec.name, critic.judge.trained_tasks) == ("q-realign", ("mos", "attributes"))
    assert (critic.resolution.image_size, critic.resolution.source) == (size, "vcritic.json")

    image = sample_images["chelsea"]
    direct = load_critic(tiny_llava, adapter=trained / "previous" / "1", readout="q-realign", image_size=size)
    plain = load_critic(tiny_llava, readout="q-realign", image_size=size)
    mos = critic.score([image])[0].mos
    assert mos == pytest.approx(direct.score([image])[0].mos, abs=1e-5)  # the adapter it names was applied
    assert abs(mos - plain.score([image])[0].mos) > 1e-3
