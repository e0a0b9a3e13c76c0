"""vcritic: perceptual image quality from a multimodal model (VisualCritic).

The public Python API is imported lazily so ``import vcritic`` (and ``vcritic --help``) stays fast::

    import vcritic
    critic = vcritic.load_critic()               # the CLI's default model; or a path, preset or repo id
    score = critic.score("photo.jpg", tasks="all")  # Score: mos, attributes (0-100), p_ai_generated (0-1)
    scores = critic.score([img1, "b.png"])        # a list in, a list out; PIL images or paths
    critic.compare("a.png", "b.png").p_a_better   # P(a better than b), symmetric in argument order
    critic.describe("photo.jpg").text             # the written assessment (greedy: same image, same text)
    critic.chat("photo.jpg").ask("Is it sharp?")  # a Conversation: follow-up questions keep the history
    critic.rank(["a.png", "b.png", "c.png"]).images[0].path  # best first, Bradley-Terry from pairwise comparisons
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_critic": "vcritic.inference.loading",
    "Critic": "vcritic.inference.critic",
    "Score": "vcritic.readout.results",
    "Comparison": "vcritic.readout.results",
    "Description": "vcritic.readout.results",
    "Conversation": "vcritic.inference.chat",
    "Ranking": "vcritic.readout.results",
    "RankedImage": "vcritic.readout.results",
    "VcriticError": "vcritic.errors",
    "Calibration": "vcritic.evaluation.calibration",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
