"""Loading a pipeline (minimal first version; the full loader replaces this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.diffusion.families import Family
from models.diffusion.speed import dtype_kwarg


def load_pipeline(
    model: str,
    family: Family,
    dtype: torch.dtype,
    *,
    revision: str | None = None,
    variant: str | None = "auto",
) -> Any:
    import diffusers

    cls = getattr(diffusers, family.pipeline_class)
    local = Path(model).is_dir()
    dtypes: Any = {"default": dtype, **{c: torch.float32 for c in family.full_precision}}
    if variant == "auto":
        variant = family.variant if local and any(Path(model).rglob(f"*.{family.variant}.*")) else None
    return cls.from_pretrained(
        model, local_files_only=local, revision=revision, variant=variant, **dtype_kwarg(dtypes)
    )
