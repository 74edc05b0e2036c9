"""Image-to-video diffusion (GPU workers): any supported diffusers pipeline, loaded once, animated per job.

Imports torch and diffusers; only the diffusion worker path and its tests import this package.
"""

from models.diffusion.animator import DiffusionAnimator, svd_motion_bucket
from models.diffusion.families import FAMILIES, Family, resolve_family
from models.diffusion.speed import SpeedSettings

__all__ = ["FAMILIES", "DiffusionAnimator", "Family", "SpeedSettings", "resolve_family", "svd_motion_bucket"]
