"""Named checkpoints: short names for hub repos, pinned to a revision where one was looked up.

No official VisualCritic weights were released. The presets are trained IQA judges (Q-ReAlign, VisualQuality-R1),
each asked the way its model card asks it (its :class:`~vcritic.model.readout_specs.ReadoutSpec`), and general base
models that are zero-shot critics out of the box and starting points for ``vcritic train``; all load natively in
transformers (no ``trust_remote_code``). Each entry says what the checkpoint is, what it was trained on, its size,
licence and published SRCC. docs/models/choosing.md compares them.

Peers that *are* tuned for quality assessment (Q-Align, DeQA-Score, Co-Instruct) are mPLUG-Owl2 models that need
``trust_remote_code`` and transformers 4.36, so they are not presets; any such repo can still be passed by its hub id
together with ``--trust-remote-code``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from vcritic.errors import VcriticError
from vcritic.model.readout_specs import Q_REALIGN, VCRITIC, VISUALQUALITY_R1, ReadoutSpec

# Machine classes for `vcritic models`: where a preset runs well, from its bf16 weights (a GPU) or fp32 (a CPU).
LAPTOP, GPU_24GB, GPU_80GB = "CPU/laptop", "24 GB GPU", "80 GB GPU"


@dataclass(frozen=True)
class Preset:
    name: str
    repo: str
    revision: str  # a commit sha where known: the same name always gives the same weights
    family: str  # transformers model_type
    spec: ReadoutSpec  # how it is asked and read out, and the tasks it was trained for (vcritic.model.readout_specs)
    license: str
    params_b: float  # parameters, billions: the card's total where known, else the size in the model's name
    note: str  # what it is and what it was trained on
    srcc: tuple[float, float, float] | None = None  # published KonIQ / SPAQ / KADID SRCC from its card

    @property
    def pinned(self) -> bool:
        return len(self.revision) == 40 and all(c in "0123456789abcdef" for c in self.revision)

    @property
    def params(self) -> str:
        return f"{self.params_b:g}B"

    @property
    def readout(self) -> str:
        return self.spec.name

    @property
    def bf16_gb(self) -> float:
        """Memory the weights need in bfloat16 (2 bytes each), GB; activations come on top."""
        return self.params_b * 2.0

    @property
    def machine(self) -> str:
        """The smallest machine class it runs well on: a laptop's CPU (fp32 weights within 10 GB, so a 16 GB
        laptop holds them), a 24 GB GPU (bf16 weights within 18 GB, leaving room for a batch) or an 80 GB GPU."""
        if self.params_b * 4.0 <= 10.0:
            return LAPTOP
        if self.bf16_gb <= 18.0:
            return GPU_24GB
        return GPU_80GB

    @property
    def trained_tasks(self) -> tuple[str, ...] | None:
        return self.spec.trained_tasks


_UNPINNED = "main"  # no full commit sha could be looked up for these repos yet: they follow the hub's main branch

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="q-realign-lite-4b",
            repo="q-future/Q-ReAlign-Lite-4B",
            revision=_UNPINNED,
            family="qwen3_5",
            spec=Q_REALIGN,
            license="Apache-2.0",
            params_b=4.0,
            note="Default on a GPU. IQA judge: Qwen3.5-4B fine-tuned in full on Q-Align's KonIQ, SPAQ, KADID, AVA "
            "and LSVQ levels (ONE-ALIGN: image quality, aesthetics, video quality). Trained for MOS only in vcritic's "
            "terms.",
            srcc=(0.943, 0.932, 0.928),
        ),
        Preset(
            name="q-realign-mini-0.8b",
            repo="q-future/Q-ReAlign-Mini-0.8B",
            revision=_UNPINNED,
            family="qwen3_5",
            spec=Q_REALIGN,
            license="Apache-2.0",
            params_b=0.8,
            note="Default without CUDA. The smallest Q-ReAlign judge (Qwen3.5-0.8B, same training as Lite): runs on "
            "a laptop CPU. Trained for MOS only.",
            srcc=(0.935, 0.931, 0.903),
        ),
        Preset(
            name="q-realign-pro-9b",
            repo="q-future/Q-ReAlign-Pro-9B",
            revision=_UNPINNED,
            family="qwen3_5",
            spec=Q_REALIGN,
            license="Apache-2.0",
            params_b=9.0,
            note="The largest Q-ReAlign judge (Qwen3.5-9B, same training): the best published figures. Trained for "
            "MOS only.",
            srcc=(0.950, 0.935, 0.934),
        ),
        Preset(
            name="visualquality-r1-7b",
            repo="TianheWu/VisualQuality-R1-7B",
            revision=_UNPINNED,
            family="qwen2_5_vl",
            spec=VISUALQUALITY_R1,
            license="MIT",
            params_b=8.3,
            note="Reasoning IQA judge: Qwen2.5-VL-7B trained with RL-to-rank on KADID-10K, TID2013, KonIQ-10k and "
            "more (arXiv 2505.14460). Writes its reasoning, then a 1-5 rating that vcritic parses: one generation "
            "per image, much slower than a read-out. Trained for MOS only.",
        ),
        Preset(
            name="qwen3-vl-2b",
            repo="Qwen/Qwen3-VL-2B-Instruct",
            revision=_UNPINNED,
            family="qwen3_vl",
            spec=VCRITIC,
            license="Apache-2.0",
            params_b=2.0,
            note="Qwen3-VL instruction-tuned on general data; no IQA tuning (zero-shot, vcritic's prompts). A "
            "modern base for vcritic train (IQA-T1 and MR-IQA start from it).",
        ),
        Preset(
            name="qwen3-vl-4b",
            repo="Qwen/Qwen3-VL-4B-Instruct",
            revision=_UNPINNED,
            family="qwen3_vl",
            spec=VCRITIC,
            license="Apache-2.0",
            params_b=4.0,
            note="Qwen3-VL 4B, general instruction data; zero-shot (vcritic's prompts). Base of IQA-T1/MR-IQA.",
        ),
        Preset(
            name="qwen3-vl-8b",
            repo="Qwen/Qwen3-VL-8B-Instruct",
            revision=_UNPINNED,
            family="qwen3_vl",
            spec=VCRITIC,
            license="Apache-2.0",
            params_b=8.0,
            note="Qwen3-VL 8B, general instruction data; zero-shot (vcritic's prompts).",
        ),
        Preset(
            name="smolvlm2-2.2b",
            repo="HuggingFaceTB/SmolVLM2-2.2B-Instruct",
            revision=_UNPINNED,
            family="smolvlm",
            spec=VCRITIC,
            license="Apache-2.0",
            params_b=2.2,
            note="SmolVLM2 (SigLIP + SmolLM2-1.7B), general image/video instruction data; zero-shot (vcritic's "
            "prompts). Laptop-class.",
        ),
        Preset(
            name="smolvlm-256m",
            repo="HuggingFaceTB/SmolVLM-256M-Instruct",
            revision=_UNPINNED,
            family="idefics3",
            spec=VCRITIC,
            license="Apache-2.0",
            params_b=0.256,
            note="The smallest SmolVLM (SigLIP-93M + SmolLM2-135M); zero-shot (vcritic's prompts). For trying "
            "vcritic anywhere or as a base for vcritic train, not for trustworthy scores.",
        ),
        Preset(
            name="qwen2.5-vl-7b",
            repo="Qwen/Qwen2.5-VL-7B-Instruct",
            revision="cc594898137f460bfe9f0759e9844b3ce807cfb5",
            family="qwen2_5_vl",
            spec=VCRITIC,
            license="Apache-2.0",
            params_b=8.3,
            note="Qwen2.5-VL instruction-tuned on general image/video/document data; no IQA tuning (zero-shot), "
            "the base of VisualQuality-R1 and Q-Insight, and for vcritic train.",
        ),
        Preset(
            name="qwen2.5-vl-3b",
            repo="Qwen/Qwen2.5-VL-3B-Instruct",
            revision="66285546d2b821cf421d4f5eb2576359d3770cd3",
            family="qwen2_5_vl",
            spec=VCRITIC,
            license="Qwen Research (non-commercial)",
            params_b=3.8,
            note="Smaller Qwen2.5-VL (about half the memory of the 7B), same general instruction data. Zero-shot, "
            "no IQA tuning.",
        ),
        Preset(
            name="instructblip-vicuna-7b",
            repo="Salesforce/instructblip-vicuna-7b",
            revision="19103d0c5b5263c8a7891012e08573439fb6607f",
            family="instructblip",
            spec=VCRITIC,
            license="LLaMA-1 terms (non-commercial)",
            params_b=7.9,
            note="Paper-faithful family: EVA ViT-g + BLIP-2 Q-Former + Vicuna (as MiniGPT-4), instruction-tuned "
            "on 13 VQA/caption datasets. No IQA tuning.",
        ),
        Preset(
            name="instructblip-vicuna-13b",
            repo="Salesforce/instructblip-vicuna-13b",
            revision="main",
            family="instructblip",
            spec=VCRITIC,
            license="LLaMA-1 terms (non-commercial)",
            params_b=14.2,
            note="As instructblip-vicuna-7b with the paper's decoder size (Vicuna-13B). No IQA tuning.",
        ),
        Preset(
            name="llava-1.5-7b",
            repo="llava-hf/llava-1.5-7b-hf",
            revision="b234b804b114d9e37bb655e11cbbb5f5e971b7a9",
            family="llava",
            spec=VCRITIC,
            license="Llama 2 Community",
            params_b=7.1,
            note="LLaVA-1.5: CLIP ViT-L/336 + Vicuna-7B v1.5, trained on LLaVA-Instruct-665K. The usual zero-shot "
            "IQA baseline (Q-Bench). No IQA tuning.",
        ),
    )
}

# The best trained judge a normal (24 GB) GPU runs well: Q-ReAlign Lite is within .007 SRCC of Pro on KonIQ, SPAQ
# and KADID at half its memory (9 GB of bf16 weights, not 19), and well ahead of every zero-shot model. Without
# CUDA the default is the laptop-class Mini (see default_preset and docs/models/choosing.md).
DEFAULT_PRESET = "q-realign-lite-4b"
CPU_DEFAULT_PRESET = "q-realign-mini-0.8b"


def default_preset(cuda: bool | None = None) -> str:
    """The preset a command uses without --model: Lite where CUDA is there, Mini on a CPU-only machine (a 4B model
    in fp32 on a laptop CPU takes seconds per image). ``cuda`` defaults to whether torch sees a GPU."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return DEFAULT_PRESET if cuda else CPU_DEFAULT_PRESET


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
