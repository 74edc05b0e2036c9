"""`vivify animate` with the diffusion animator: one clip at the asked shapes, with no warm-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main
from app.core.config import get_settings
from models.diffusion.animator import DiffusionAnimator
from models.video import probe
from tests.fixtures.tiny_pipelines import build_tiny_svd


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("VIVIFY_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_one_shot_animate_never_warms_up(
    env: Path, portrait, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Even where the settings ask workers to warm up, the one-shot CLI runs the clip and nothing else:
    a warm-up runs at the family's production shapes, which `--size`/`--frames` do not use."""
    folder = build_tiny_svd(env / "svd")
    warmed: list[tuple[int, int]] = []
    monkeypatch.setattr(DiffusionAnimator, "_warm_up", lambda self: warmed.append(self.family.size))
    monkeypatch.setenv("VIVIFY_ANIMATOR", "diffusion")
    monkeypatch.setenv("VIVIFY_ANIMATOR_OPTIONS", '{"warmup": true, "color_match": 0.5}')
    get_settings.cache_clear()
    photo, out = env / "me.png", env / "clip.mp4"
    portrait.save(photo)
    args = ["animate", str(photo), "-o", str(out), "--model", str(folder), "--size", "128x64"]
    assert main([*args, "--frames", "8", "--steps", "1", "--seed", "2"]) == 0
    assert warmed == []
    info = probe(out)
    assert (info.width, info.height, info.fps) == (128, 64, 24.0)
    assert "setup:" in capsys.readouterr().out
