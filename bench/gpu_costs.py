"""What one clip of each diffusion family costs on an H100-class GPU (bf16): the denoiser's FLOPs, counted,
and the other stages' seconds, judged. Shared by bench/gpu_i2v.py (how long a row will take) and
bench/autoscale.py (a day of traffic); torch-free, so the simulator starts in a blink."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prior:
    """A family's cost at its default size and frames on an H100-class GPU (bf16), for estimating a row."""

    call_tflop: float  # one denoiser call at batch 1 (a guided step is two)
    other_s: float  # per clip: analysing (encoders), decoding, post-processing, MP4 encoding
    build_s: float  # building the random-weight pipeline on the GPU
    compile_s: float  # torch.compile of the denoiser for one shape, in the warm-up
    params_b: float = 0.0  # billions of parameters the pipeline loads (all components), counted


# call_tflop: counted by --check-configs (FakeTensor replay of one call at the default shape). The seconds are
# judgement: the SVD VAE's temporal decoder and the Wan/LTX 3D VAEs at these sizes, optical-flow frame
# interpolation and H.264 encoding of ~100 frames; a full-graph compile of a 1.5 B UNet (~1 min) against a
# regional one of a repeated transformer block. params_b: the real configs' parameter counts, also from
# --check-configs (bench/RESULTS.md), summed over the VAE, encoders and denoiser.
PRIORS = {
    "svd": Prior(call_tflop=79.9, other_s=5, build_s=5, compile_s=60, params_b=0.098 + 0.632 + 1.525),
    "wan2.1": Prior(
        call_tflop=1686, other_s=20, build_s=15, compile_s=30, params_b=0.127 + 5.681 + 0.631 + 16.395
    ),
    "ltx": Prior(call_tflop=22.6, other_s=8, build_s=10, compile_s=25, params_b=0.419 + 4.762 + 1.923),
    "cogvideox": Prior(call_tflop=332, other_s=10, build_s=10, compile_s=30, params_b=4.762 + 0.216 + 5.570),
}
MFU_COMPILED, MFU_EAGER = 0.45, 0.35  # guesses: diffusers video models in bf16 on an H100
