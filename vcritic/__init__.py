"""vcritic: perceptual image quality from a multimodal model (VisualCritic).

The public Python API is imported lazily so ``import vcritic`` (and ``vcritic --help``) stays fast::

    import vcritic
    critic = vcritic.load_critic("path/or/preset")
    scores = critic.score([img1, img2])         # list[Score]: mos and mos_std on a 0-100 scale
    p = critic.compare([(img_a, img_b)])        # P(a better than b), symmetric in argument order
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Critic", "VcriticError", "load_critic", "__version__"]


def __getattr__(name: str):
    if name == "load_critic":
        from vcritic.loading import load_critic

        return load_critic
    if name == "Critic":
        from vcritic.critic import Critic

        return Critic
    if name == "VcriticError":
        from vcritic.errors import VcriticError

        return VcriticError
    raise AttributeError(name)
