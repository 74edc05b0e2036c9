"""Benchmark of the live view: the rig's size and build time, and the browser's frame rate and
pointer-to-pixel latency in headless Chromium.

1. Rig, on the server: `rig_of_photo` (median of --runs, after one warm-up that loads mediapipe), and the
   rig's JSON size, raw and gzipped, for Grace Hopper (512x600), the astronaut (512x512) and the
   astronaut upscaled to 1080 px.
2. Browser, against the real page (`vivify up` on a free port, a photo uploaded through the form):
   Debian's headless Chromium, WebGL2 in SOFTWARE (ANGLE on SwiftShader, no GPU), at a 768 px canvas
   (the astronaut upscaled to 768: the canvas is the rig's own pixels) and at 1080 px:
   - draw: one frame (vertices moved on the CPU, one draw call, the eye shader active) made complete by
     reading a pixel back (gl.readPixels forces the GPU process to finish it), in a tight loop;
   - live fps: the live view's own requestAnimationFrame loop (breathing, blink and the look follow all
     moving), each frame made complete the same way, counted over --seconds;
   - pointer-to-pixel: a pointermove dispatched on the canvas, to the readback of the first frame drawn
     after it (it includes the wait for the next animation frame; not the OS's input or the display).

    .venv/bin/python bench/live_view.py [--runs 5] [--frames 60] [--moves 50] [--seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import skimage.data
from matplotlib import cbook
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def portraits() -> dict[str, Image.Image]:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        gh = Image.open(f).convert("RGB")
    ast = Image.fromarray(skimage.data.astronaut())
    return {
        "grace-hopper-512x600": gh,
        "astronaut-512": ast,
        "astronaut-768": ast.resize((768, 768), Image.Resampling.LANCZOS),
        "astronaut-1080": ast.resize((1080, 1080), Image.Resampling.LANCZOS),
    }


def rig_numbers(images: dict[str, Image.Image], runs: int) -> list[dict]:
    from models.face import shared_analyzer
    from models.portrait.mesh import rig_of_photo

    analyzer = shared_analyzer()
    rig_of_photo(images["astronaut-512"], analyzer=analyzer)  # warm-up: mediapipe's graphs load once
    rows = []
    for name in ("grace-hopper-512x600", "astronaut-512", "astronaut-1080"):
        times, rig = [], None
        for _ in range(runs):
            t0 = time.perf_counter()
            rig = rig_of_photo(images[name], analyzer=analyzer)
            times.append(time.perf_counter() - t0)
        assert rig is not None, name
        text = json.dumps(rig.to_json(), separators=(",", ":")).encode()
        rows.append({
            "photo": name, "rig_px": f"{rig.width}x{rig.height}", "vertices": len(rig.vertices),
            "triangles": len(rig.triangles), "rows": len(rig.rows), "json_bytes": len(text),
            "gzip_bytes": len(gzip.compress(text, 6)),
            "build_ms_median": round(1000 * statistics.median(times), 1),
            "build_ms_all": [round(1000 * t, 1) for t in times],
        })  # fmt: skip
    return rows


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "VIVIFY_DATA_DIR": str(data), "VIVIFY_ANIMATOR": "portrait",
           "VIVIFY_ENV": "development", "VIVIFY_RATE_LIMIT": "1000/minute", "VIVIFY_LOG_LEVEL": "WARNING",
           "HOST": "127.0.0.1", "PORT": str(port), "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("VIVIFY_PORT", None)
    env.pop("VIVIFY_HOST", None)
    exe = Path(sys.executable).with_name("vivify")
    log = (data / "vivify-up.log").open("wb")
    proc = subprocess.Popen([str(exe), "up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vivify up exited: {(data / 'vivify-up.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("vivify up did not answer in 90 s")


def make_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
                "--window-size=1280,1000", "--force-device-scale-factor=1",
                "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


DRAW_JS = """
const [frames, done] = arguments;
const live = window.vivifyLive, r = live.renderer, gl = r.gl, px = new Uint8Array(4), ms = [];
for (let i = 0; i < frames + 5; i += 1) {
  const t = i / frames;
  const values = {yaw: 15 * Math.sin(6.283 * t), pitch: 5 * Math.cos(6.283 * t), smile: t,
                  blink: 0.5, gaze_x: 0.4};
  const t0 = performance.now();
  r.draw(values);
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
  if (i >= 5) ms.push(performance.now() - t0);  // the first frames warm the shader up
}
done(ms);
"""

LIVE_FPS_JS = """
const [seconds, done] = arguments;
const live = window.vivifyLive, gl = live.renderer.gl, px = new Uint8Array(4);
const canvas = document.getElementById('live-canvas'), rect = canvas.getBoundingClientRect();
const blink = document.getElementById('live-blink');
let n = 0, t0 = null;
const onFrame = () => {
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
  if (t0 === null) { t0 = performance.now(); return; }
  n += 1;
  // keep something moving: the pointer circles the face, the blink slider swings
  const a = n / 10;
  canvas.dispatchEvent(new PointerEvent('pointermove', {bubbles: true, pointerType: 'mouse',
    clientX: rect.left + rect.width * (0.5 + 0.3 * Math.cos(a)),
    clientY: rect.top + rect.height * (0.4 + 0.2 * Math.sin(a))}));
  blink.value = String(0.5 + 0.5 * Math.sin(a)); blink.dispatchEvent(new Event('input'));
};
live.addEventListener('frame', onFrame);
document.getElementById('live-breath').click();
setTimeout(() => {
  const elapsed = performance.now() - t0;
  live.removeEventListener('frame', onFrame);
  document.getElementById('live-breath').click();
  done({frames: n, ms: elapsed});
}, seconds * 1000);
"""

LATENCY_JS = """
const [moves, done] = arguments;
const live = window.vivifyLive, gl = live.renderer.gl, px = new Uint8Array(4);
const canvas = document.getElementById('live-canvas'), rect = canvas.getBoundingClientRect();
const out = [];
let i = 0, sent = null;
const move = () => {
  const side = i % 2 ? 0.2 : 0.8;
  sent = performance.now();
  canvas.dispatchEvent(new PointerEvent('pointermove', {bubbles: true, pointerType: 'mouse',
    clientX: rect.left + rect.width * side, clientY: rect.top + rect.height * 0.4}));
};
const onFrame = () => {
  if (sent === null) return;  // the first frame drawn after the move (one thread: it shows the move)
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
  out.push(performance.now() - sent);
  sent = null;
  i += 1;
  if (i >= moves) { live.removeEventListener('frame', onFrame); done(out); return; }
  setTimeout(move, 30 + (i * 37) % 50);  // moves at irregular times, while the face is still following
};
live.addEventListener('frame', onFrame);
move();
"""


def browser_numbers(
    base: str, images: dict[str, Image.Image], tmp: Path, frames: int, seconds: float, moves: int
) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = make_driver()
    driver.set_script_timeout(120)
    out: dict = {"browser": driver.capabilities.get("browserVersion"), "canvases": []}
    try:
        for name in ("astronaut-768", "astronaut-1080"):
            path = tmp / f"{name}.png"
            images[name].save(path)
            driver.get(base + "/")
            driver.find_element(By.ID, "photo").send_keys(str(path))
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return !!(window.vivifyLive && vivifyLive.state().ready)")
            )
            driver.execute_script("document.getElementById('live-canvas').scrollIntoView({block: 'center'})")
            out["renderer"] = driver.execute_script(
                "const gl = vivifyLive.renderer.gl, e = gl.getExtension('WEBGL_debug_renderer_info');"
                "return e ? gl.getParameter(e.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER)"
            )
            size = driver.execute_script("const c = vivifyLive.canvas; return [c.width, c.height]")
            draw = driver.execute_async_script(DRAW_JS, frames)
            live = driver.execute_async_script(LIVE_FPS_JS, seconds)
            lat = driver.execute_async_script(LATENCY_JS, moves)
            out["canvases"].append({
                "photo": name, "canvas_px": f"{size[0]}x{size[1]}", "triangles": driver.execute_script(
                    "return vivifyLive.rig.triangles.length / 3"),
                "draw_ms_median": round(statistics.median(draw), 2),
                "draw_ms_p95": round(float(np.percentile(draw, 95)), 2),
                "draw_fps": round(1000 / statistics.mean(draw), 1),
                "live_fps": round(1000 * live["frames"] / live["ms"], 1), "live_frames": live["frames"],
                "pointer_to_pixel_ms_median": round(statistics.median(lat), 1),
                "pointer_to_pixel_ms_p95": round(float(np.percentile(lat, 95)), 1), "moves": len(lat),
            })  # fmt: skip
    finally:
        driver.quit()
    return out


def table(result: dict) -> str:
    lines = [
        "| photo | rig px | vertices | triangles | JSON bytes | gzipped | build (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rig"]:
        lines.append(f"| {r['photo']} | {r['rig_px']} | {r['vertices']:,} | {r['triangles']:,} | "
                     f"{r['json_bytes']:,} | {r['gzip_bytes']:,} | "
                     f"{r['build_ms_median']:.0f} ms |")  # fmt: skip
    lines += [
        "",
        "| canvas | draw+readback median / p95 | draw fps | live rAF fps | pointer→pixel median / p95 |",
        "|---|---|---|---|---|",
    ]
    for c in result["browser"]["canvases"]:
        lines.append(f"| {c['canvas_px']} ({c['photo']}) | {c['draw_ms_median']} / {c['draw_ms_p95']} ms | "
                     f"{c['draw_fps']} | {c['live_fps']} | "
                     f"{c['pointer_to_pixel_ms_median']} / {c['pointer_to_pixel_ms_p95']} ms |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--moves", type=int, default=50)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    images = portraits()
    result: dict = {"cpus": os.cpu_count(), "rig": rig_numbers(images, args.runs)}
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp))
        try:
            result["browser"] = browser_numbers(
                base, images, Path(tmp), args.frames, args.seconds, args.moves
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(json.dumps(result, indent=2))
    print()
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
