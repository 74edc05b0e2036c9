"""The CPU portrait animator (embedded default, GPU-free fallback and fast preview). Not diffusion."""

from models.portrait.animator import PortraitAnimator

__all__ = ["PortraitAnimator"]
