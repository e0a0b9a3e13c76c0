"""Real peft LoRA adapters for tests: saved as peft writes them, with weights that change what the model says."""

from __future__ import annotations

from pathlib import Path


def write_lora(base: Path, directory: Path) -> Path:
    """A LoRA adapter on ``q_proj``/``v_proj`` of the checkpoint ``base``, seeded, with non-zero weights so it
    changes the scores; saved to ``directory``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(1)
    model = AutoModelForImageTextToText.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.normal_(0.0, 0.5)
    model.save_pretrained(directory)
    return directory
