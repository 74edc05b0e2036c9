"""Image-to-video diffusion (GPU workers): any supported diffusers pipeline, loaded once, animated per job.

The package itself imports nothing, so the torch-free parts (`families`) stay light: `animator`, `speed`,
`loading`, `guidance` and `quantize` import torch and diffusers when they are imported.
"""
