"""`vivify animate` with the diffusion animator: one clip at the asked shapes, with no warm-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main
from app.core.config import get_settings
from bench.tiny_pipelines import build_tiny_svd
from models.diffusion.animator import DiffusionAnimator
from models.video import probe


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
    # This test is about the warm-up and the asked shapes; random weights render noise, which the guard
    # would replace by the portrait animator's clip at the photo's own shape (the next test).
    monkeypatch.setenv("VIVIFY_CLIP_GUARD", "off")
    get_settings.cache_clear()
    photo, out = env / "me.png", env / "clip.mp4"
    portrait.save(photo)
    args = ["animate", str(photo), "-o", str(out), "--model", str(folder), "--size", "128x64"]
    assert main([*args, "--frames", "8", "--steps", "1", "--seed", "2"]) == 0
    assert warmed == []
    info = probe(out)
    assert (info.width, info.height, info.fps) == (128, 64, 24.0)
    assert "setup:" in capsys.readouterr().out


def test_noise_trips_the_guard_and_the_cli_says_so(env: Path, portrait, capsys) -> None:
    """`vivify animate --animator diffusion` with random weights: the clip check fails the noise, the
    second try too, and the portrait animator makes the clip; the CLI prints the check's line."""
    folder = build_tiny_svd(env / "svd")
    photo, out = env / "me.png", env / "clip.mp4"
    portrait.save(photo)
    args = ["animate", str(photo), "-o", str(out), "--animator", "diffusion", "--model", str(folder)]
    assert main([*args, "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    assert "Likeness checked: same person (0." in printed
    assert "made by the portrait animator, after the first clips failed the check" in printed
    assert "[made by portrait]" in printed
    info = probe(out)
    assert (info.width, info.height) == portrait.size  # the portrait animator's clip, not the model's 64²
