"""Named checkpoints: short names for hub repos, pinned to a revision.

No official VisualCritic weights were released, so the presets are base models that transformers loads natively
(no ``trust_remote_code``): zero-shot critics out of the box and starting points for ``vcritic train``. Each entry
says what the checkpoint is, what it was trained on and under which license it may be used.

Peers that *are* tuned for quality assessment (Q-Align, DeQA-Score, Co-Instruct) are mPLUG-Owl2 models that need
``trust_remote_code`` and transformers 4.36, so they are not presets; any such repo can still be passed by its hub id
together with ``--trust-remote-code``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from vcritic.errors import VcriticError


@dataclass(frozen=True)
class Preset:
    name: str
    repo: str
    revision: str  # a commit sha where known: the same name always gives the same weights
    family: str  # transformers model_type
    readout: str  # how vcritic reads a score off the model (see vcritic.readout)
    license: str
    params: str  # parameter count, for a feel of memory and download size
    note: str  # what it is and what it was trained on

    @property
    def pinned(self) -> bool:
        return len(self.revision) == 40 and all(c in "0123456789abcdef" for c in self.revision)


# "levels": the expectation over the five rating words (excellent .. bad) at the answer position, 0-100.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="qwen2.5-vl-7b",
            repo="Qwen/Qwen2.5-VL-7B-Instruct",
            revision="cc594898137f460bfe9f0759e9844b3ce807cfb5",
            family="qwen2_5_vl",
            readout="levels",
            license="Apache-2.0",
            params="8.3B",
            note="Default. Qwen2.5-VL instruction-tuned on general image/video/document data; no IQA tuning "
            "(zero-shot), the modern base for vcritic train.",
        ),
        Preset(
            name="qwen2.5-vl-3b",
            repo="Qwen/Qwen2.5-VL-3B-Instruct",
            revision="66285546d2b821cf421d4f5eb2576359d3770cd3",
            family="qwen2_5_vl",
            readout="levels",
            license="Qwen Research (non-commercial)",
            params="3.8B",
            note="Smaller Qwen2.5-VL (about half the memory of the 7B), same general instruction data. Zero-shot, "
            "no IQA tuning.",
        ),
        Preset(
            name="instructblip-vicuna-7b",
            repo="Salesforce/instructblip-vicuna-7b",
            revision="19103d0c5b5263c8a7891012e08573439fb6607f",
            family="instructblip",
            readout="levels",
            license="LLaMA-1 terms (non-commercial)",
            params="7.9B",
            note="Paper-faithful family: EVA ViT-g + BLIP-2 Q-Former + Vicuna (as MiniGPT-4), instruction-tuned "
            "on 13 VQA/caption datasets. No IQA tuning.",
        ),
        Preset(
            name="instructblip-vicuna-13b",
            repo="Salesforce/instructblip-vicuna-13b",
            revision="main",
            family="instructblip",
            readout="levels",
            license="LLaMA-1 terms (non-commercial)",
            params="14.2B",
            note="As instructblip-vicuna-7b with the paper's decoder size (Vicuna-13B). No IQA tuning.",
        ),
        Preset(
            name="llava-1.5-7b",
            repo="llava-hf/llava-1.5-7b-hf",
            revision="b234b804b114d9e37bb655e11cbbb5f5e971b7a9",
            family="llava",
            readout="levels",
            license="Llama 2 Community",
            params="7.1B",
            note="LLaVA-1.5: CLIP ViT-L/336 + Vicuna-7B v1.5, trained on LLaVA-Instruct-665K. The usual zero-shot "
            "IQA baseline (Q-Bench). No IQA tuning.",
        ),
        Preset(
            name="visualquality-r1-7b",
            repo="TianheWu/VisualQuality-R1-7B",
            revision="main",
            family="qwen2_5_vl",
            readout="levels",
            license="MIT",
            params="8.3B",
            note="IQA-tuned: Qwen2.5-VL-7B trained with RL-to-rank on KADID-10K, TID2013, KonIQ-10k and more "
            "(arXiv 2505.14460). Its native answer is a 1-5 number; vcritic reads rating words from it.",
        ),
    )
}

DEFAULT_PRESET = "qwen2.5-vl-7b"


def get_preset(name: str) -> Preset | None:
    """The preset called ``name`` (case-insensitive), or None."""
    return PRESETS.get(name) or PRESETS.get(name.lower())


def preset_for_repo(repo: str) -> Preset | None:
    """The preset that points at hub repo ``repo``, if any."""
    return next((p for p in PRESETS.values() if p.repo.lower() == repo.lower()), None)


def suggest(name: str) -> str | None:
    """The closest preset name to a mistyped ``name``, or None when nothing is close."""
    candidates = list(PRESETS) + [p.repo for p in PRESETS.values()]
    matches = difflib.get_close_matches(name.lower(), [c.lower() for c in candidates], n=1, cutoff=0.6)
    if not matches:
        return None
    return next(c for c in candidates if c.lower() == matches[0])


def unknown_model_error(name: str) -> VcriticError:
    close = suggest(name)
    hint = f"did you mean {close}? " if close else ""
    hint += "Presets: " + ", ".join(PRESETS) + " (see: vcritic models); or pass a hub repo id (org/name) or a folder"
    return VcriticError(f"unknown model {name!r}: not a preset, a local folder or a hub repo id", hint=hint)
