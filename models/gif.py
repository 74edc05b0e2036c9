"""An animated GIF of a finished clip, for places that play no MP4 (chats, forums, e-mail).

ffmpeg's two-pass palette (palettegen, then paletteuse) keeps skin tones smooth where a fixed palette
bands them. A GIF has a size budget: a longer or larger clip steps down the ladder below (frame rate,
then size, then palette) until it fits, or there is no GIF.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

GIF_MAX_SIDE = 480  # px on the long side
GIF_MAX_BYTES = 10 * 1024 * 1024
GIF_TIMEOUT_S = 60.0  # one ffmpeg pass; a stuck one must not hold the worker

# (long side, frames per second, palette colours), best first
LADDER: tuple[tuple[int, int, int], ...] = (
    (480, 12, 256),
    (480, 8, 256),
    (360, 8, 128),
    (320, 6, 64),
    (240, 5, 32),
)


class GifError(Exception):
    """No GIF within the budget could be made; the clip itself is unaffected."""


@dataclass(frozen=True)
class Gif:
    data: bytes
    width: int
    height: int
    fps: int
    colors: int

    def to_json(self) -> dict[str, int]:
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "colors": self.colors,
            "bytes": len(self.data),
        }


def gif_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The clip's aspect with the long side at most `long_side`, never enlarged."""
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def make_gif(
    mp4: bytes,
    width: int,
    height: int,
    *,
    max_bytes: int = GIF_MAX_BYTES,
    ladder: tuple[tuple[int, int, int], ...] = LADDER,
) -> Gif:
    """The best GIF of the clip on the ladder that fits `max_bytes`; GifError when none does."""
    import imageio_ffmpeg  # ships ffmpeg; there is no system one

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory(prefix="vivify-gif-") as tmp:
        source, out = Path(tmp) / "clip.mp4", Path(tmp) / "clip.gif"
        source.write_bytes(mp4)
        for long_side, fps, colors in ladder:
            w, h = gif_size(width, height, long_side)
            graph = (
                f"fps={fps},scale={w}:{h}:flags=lanczos,split[a][b];"
                f"[a]palettegen=max_colors={colors}:stats_mode=diff[p];"
                "[b][p]paletteuse=dither=bayer:bayer_scale=4:diff_mode=rectangle"
            )
            command = [ffmpeg, "-v", "error", "-y", "-i", str(source), "-filter_complex", graph]
            command += ["-loop", "0", "-f", "gif", str(out)]
            try:
                done = subprocess.run(command, capture_output=True, timeout=GIF_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired as exc:
                raise GifError(f"ffmpeg took over {GIF_TIMEOUT_S:g} s") from exc
            if done.returncode != 0:
                raise GifError(done.stderr.decode(errors="replace").strip()[-300:] or "ffmpeg failed")
            data = out.read_bytes()
            if len(data) <= max_bytes:
                return Gif(data, w, h, fps, colors)
    raise GifError(f"no GIF under {max_bytes} bytes, even at {ladder[-1]}")
