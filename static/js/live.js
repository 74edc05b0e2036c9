// "Direct it live": the visitor's own photo, moving in WebGL as they direct it (static/js/rig.js draws it).
// The face turns and looks toward the pointer or finger (or the arrow keys), sliders set the smile, brows
// and blink, a toggle breathes; Record keeps 3 s up to the clip's length of it at 24 samples a second, Play loops
// it as the clip will (closeLoop), and "My recording" sends it with the job as its motion.
import { stillRigFaces } from "./faces.js";
import { FPS, RigRenderer, clamp, closeLoop, fullValues, parseRig, webgl2Available } from "./rig.js";
import { phrase } from "./words.js";

const RECORD_MIN = 3 * FPS; // samples: Stop is allowed from 3 s
const RECORD_MAX_S = 10; // and recording stops by itself at the clip's length, at most 10 s
// After a recording stops, Record stays disabled this long: a click meant for "Stop" that lands just
// after the automatic stop must not start a new recording in its place.
const REARM_MS = 1500;
const HEAD_TIME_S = 0.22; // smoothing time of the head's follow; the eyes lead with a shorter one
const EYE_TIME_S = 0.07;
const BREATH_PERIOD_S = 4;
const KEY_STEP = 0.2; // face widths per arrow key press
const DIGITS = 3; // decimals kept in the submitted curves

// A critically damped follow of a target (exact solution of x'' = w^2 (target - x) - 2w x').
class Follow {
  constructor(time, span) {
    this.w = 2 / time;
    this.eps = span * 1e-4;
    this.value = 0;
    this.velocity = 0;
    this.target = 0;
  }

  step(dt) {
    const x = this.value - this.target;
    const k = (this.velocity + this.w * x) * dt;
    const e = Math.exp(-this.w * dt);
    this.value = this.target + (x + k) * e;
    this.velocity = (this.velocity - this.w * k) * e;
    if (this.settled()) this.jump(this.target);
  }

  settled() {
    return Math.abs(this.value - this.target) < this.eps && Math.abs(this.velocity) < this.eps * 10;
  }

  jump(value) {
    this.value = this.target = value;
    this.velocity = 0;
  }
}

const round = (x) => Number(x.toFixed(DIGITS));

export class LiveView extends EventTarget {
  constructor(panel, option) {
    super();
    this.panel = panel;
    this.option = option; // the "My recording" motion choice (hidden until there is a recording)
    this.recordMax = RECORD_MAX_S * FPS; // samples; the page sets the clip's length (setMaxSeconds)
    this.radio = option ? option.querySelector("input") : null;
    this.$ = (id) => panel.querySelector(`#${id}`);
    this.canvas = this.$("live-canvas");
    this.renderer = null;
    this.rig = null;
    this.token = 0;
    this.raf = 0;
    this.last = 0;
    this.sliders = { smile: this.$("live-smile"), brow: this.$("live-brow"), blink: this.$("live-blink") };
    this.record = null; // {start, samples: {channel: []}} while recording
    this.recorded = null; // {channel: [n samples]} once recorded
    this.play = null; // {start, curves} while playing
    this.shown = {};
    this.reset();
    this.bind();
  }

  // --- showing a photo -----------------------------------------------------------------------------------

  static supported() {
    return webgl2Available();
  }

  // The photo check answered with this photo's rig: draw it live.
  async show(rigJson, file) {
    const token = ++this.token;
    this.stop();
    try {
      const rig = parseRig(rigJson);
      const photo = await createImageBitmap(file, {
        imageOrientation: "from-image",
        colorSpaceConversion: "none", // as the server decodes it: the clip's colours
        premultiplyAlpha: "none",
      });
      if (token !== this.token) return;
      this.freshCanvas();
      this.renderer = new RigRenderer(this.canvas, rig, photo);
      this.renderer.setStill(stillRigFaces(rig, this.chosenBoxes));
      photo.close();
      this.rig = rig;
    } catch (err) {
      if (token !== this.token) return;
      this.unsupported(phrase("live_failed", { reason: err.message || err }));
      return;
    }
    this.reset();
    this.$("live-fallback").hidden = true;
    this.$("live-stage").hidden = false;
    this.panel.hidden = false;
    this.say("");
    this.draw();
  }

  // The faces the visitor chose (boxes from the photo check, null: every face): the others keep still.
  setChosenFaces(boxes) {
    this.chosenBoxes = boxes;
    if (!this.renderer || !this.rig) return;
    this.renderer.setStill(stillRigFaces(this.rig, boxes));
    this.draw();
  }

  // No WebGL2 (or the rig could not be drawn): say so; the presets and the text still work.
  unsupported(message = null) {
    this.hide();
    const note = this.$("live-fallback");
    if (message) note.textContent = message;
    note.hidden = false;
    this.$("live-stage").hidden = true;
    this.panel.hidden = false;
  }

  hide() {
    this.token += 1;
    this.stop();
    if (this.renderer) this.renderer.destroy();
    this.renderer = null;
    this.rig = null;
    this.panel.hidden = true;
    this.forget();
  }

  freshCanvas() {
    if (this.renderer) this.renderer.destroy();
    this.renderer = null;
    const fresh = this.canvas.cloneNode(false); // a lost context cannot come back: a new canvas per photo
    this.canvas.replaceWith(fresh);
    this.canvas = fresh;
    this.bindCanvas();
  }

  reset() {
    const lim = (ch) => (this.rig && this.rig.limits[ch]) || [-1, 1];
    const span = (ch) => lim(ch)[1] - lim(ch)[0];
    this.look = {
      yaw: new Follow(HEAD_TIME_S, span("yaw")),
      pitch: new Follow(HEAD_TIME_S, span("pitch")),
      gaze_x: new Follow(EYE_TIME_S, span("gaze_x")),
      gaze_y: new Follow(EYE_TIME_S, span("gaze_y")),
    };
    this.breath = new Follow(0.6, 1);
    this.breathStart = 0;
    this.roll = 0;
    this.aim = null; // where the visitor points, in face widths from face 0's centre
    for (const input of Object.values(this.sliders)) input.value = "0";
    this.$("live-breath").checked = false;
    this.forget();
  }

  // The clip's length, in seconds: a recording stops by itself there.
  setMaxSeconds(seconds) {
    this.recordMax = Math.round(clamp(seconds, RECORD_MIN / FPS, RECORD_MAX_S) * FPS);
  }

  recordedSeconds() {
    return this.recorded ? this.recorded.yaw.length / FPS : 0;
  }

  // A new photo (or none): the recording belonged to the old one.
  forget() {
    const had = Boolean(this.recorded);
    this.record = null;
    this.recorded = null;
    this.play = null;
    if (this.radio) {
      const wasChosen = this.radio.checked;
      this.radio.checked = false;
      this.radio.disabled = true;
      if (wasChosen) {
        const fallback = this.radio.form.querySelector("input[name=motion][value=auto]") ||
          this.radio.form.querySelector("input[name=motion]:not([value=recorded])");
        if (fallback) fallback.checked = true;
        this.radio.form.dispatchEvent(new Event("change"));
      }
    }
    if (this.option) this.option.hidden = true;
    this.syncButtons();
    if (had) this.dispatchEvent(new Event("forgotten"));
  }

  // --- controls ------------------------------------------------------------------------------------------

  bind() {
    for (const input of Object.values(this.sliders)) input.addEventListener("input", () => this.schedule());
    this.$("live-breath").addEventListener("change", (e) => {
      this.breathStart = performance.now();
      if (!e.target.checked) this.breath.target = 0;
      this.schedule();
    });
    this.$("live-record").addEventListener("click", () => (this.record ? this.stopRecording() : this.startRecording()));
    this.$("live-play").addEventListener("click", () => (this.play ? this.stopPlaying() : this.startPlaying()));
    this.bindCanvas();
  }

  bindCanvas() {
    const c = this.canvas;
    c.addEventListener("pointermove", (e) => this.point(e));
    c.addEventListener("pointerdown", (e) => {
      if (e.pointerType !== "mouse") c.setPointerCapture(e.pointerId);
      this.point(e);
    });
    const away = (e) => {
      if (e.type === "pointerup" && e.pointerType === "mouse") return;
      this.aimAt(null);
    };
    for (const type of ["pointerup", "pointercancel", "pointerleave"]) c.addEventListener(type, away);
    c.addEventListener("keydown", (e) => this.key(e));
  }

  // Pointer position -> face widths from face 0's centre.
  point(e) {
    if (!this.rig || !this.rig.faces.length) return;
    const rect = this.canvas.getBoundingClientRect();
    if (!rect.width || !rect.height) return;
    const x = ((e.clientX - rect.left) / rect.width) * this.rig.width;
    const y = ((e.clientY - rect.top) / rect.height) * this.rig.height;
    const face = this.rig.faces[0];
    this.aimAt({ x: (x - face.centre[0]) / face.width, y: (y - face.centre[1]) / face.width });
  }

  key(e) {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (moves[e.key]) {
      const aim = this.aim || { x: 0, y: 0 };
      const [dx, dy] = moves[e.key];
      this.aimAt({ x: clamp(aim.x + dx * KEY_STEP, -2, 2), y: clamp(aim.y + dy * KEY_STEP, -2, 2) });
    } else if (e.key === "Escape" || e.key === "Home" || e.key === "0") {
      this.aimAt(null);
    } else {
      return;
    }
    e.preventDefault();
  }

  // Look-at: the head turns toward the aim within its limits, the eyes further and faster.
  aimAt(aim) {
    this.aim = aim;
    const { x, y } = aim || { x: 0, y: 0 };
    const max = (ch) => Math.max(...this.rig.limits[ch].map(Math.abs));
    const lim = (ch, v) => clamp(v, ...this.rig.limits[ch]);
    this.look.yaw.target = lim("yaw", max("yaw") * Math.tanh(x * 0.9)); // > 0: toward the picture's right
    this.look.pitch.target = lim("pitch", -max("pitch") * Math.tanh(y * 1.1)); // > 0: up
    this.look.gaze_x.target = lim("gaze_x", Math.tanh(x * 2.0));
    this.look.gaze_y.target = lim("gaze_y", Math.tanh(y * 2.5)); // > 0: down
    this.schedule();
  }

  // --- frames --------------------------------------------------------------------------------------------

  schedule() {
    if (!this.renderer || this.raf) return;
    this.raf = requestAnimationFrame((now) => this.frame(now));
  }

  stop() {
    if (this.raf) cancelAnimationFrame(this.raf);
    this.raf = 0;
    this.last = 0;
  }

  animating() {
    return Boolean(
      this.record || this.play || this.$("live-breath").checked || !this.breath.settled() ||
        Object.values(this.look).some((f) => !f.settled()),
    );
  }

  // What the visitor directs now (before any playback).
  liveValues(now) {
    if (this.$("live-breath").checked) {
      this.breath.jump(0.5 - 0.5 * Math.cos((2 * Math.PI * (now - this.breathStart)) / 1000 / BREATH_PERIOD_S));
    }
    const values = { roll: this.roll, breath: this.breath.value };
    for (const [ch, f] of Object.entries(this.look)) values[ch] = f.value;
    for (const [ch, input] of Object.entries(this.sliders)) values[ch] = Number(input.value);
    return fullValues(values, this.rig);
  }

  frame(now) {
    this.raf = 0;
    if (!this.renderer) return;
    const dt = this.last ? Math.min(0.25, (now - this.last) / 1000) : 1 / 60; // the follow is exact at any step
    this.last = now;
    for (const f of Object.values(this.look)) f.step(dt);
    this.breath.step(dt);
    let values = this.liveValues(now);
    if (this.record) this.sample(now, values);
    if (this.play) values = this.playValues(now);
    this.draw(values, now);
    if (this.animating()) this.schedule();
    else this.last = 0;
  }

  draw(values = this.shown, now = performance.now()) {
    if (!this.renderer) return;
    this.renderer.draw(values);
    this.shown = values;
    // Listeners may read the frame's pixels now (the drawing buffer is kept until this task ends).
    this.dispatchEvent(new CustomEvent("frame", { detail: { time: now, values } }));
  }

  // --- record and play -----------------------------------------------------------------------------------

  startRecording() {
    if (!this.renderer) return;
    this.stopPlaying();
    this.record = { start: performance.now(), samples: Object.fromEntries(this.rig.channels.map((ch) => [ch, []])) };
    this.say(phrase("live_recording", { max: this.recordMax / FPS }));
    this.syncButtons();
    this.schedule();
  }

  // Samples at 24 a second of the live values (a slow frame repeats the values it shows).
  sample(now, values) {
    const { samples } = this.record;
    const due = Math.min(this.recordMax, Math.floor(((now - this.record.start) / 1000) * FPS) + 1);
    const before = samples.yaw.length;
    while (samples.yaw.length < due) for (const ch of this.rig.channels) samples[ch].push(values[ch]);
    if (before < RECORD_MIN && samples.yaw.length >= RECORD_MIN) this.syncButtons();
    this.$("live-time").textContent = phrase("live_time", { seconds: (samples.yaw.length / FPS).toFixed(1) });
    if (samples.yaw.length >= this.recordMax) this.stopRecording();
  }

  stopRecording() {
    if (!this.record) return;
    const { samples } = this.record;
    this.record = null;
    if (samples.yaw.length < RECORD_MIN) {
      this.say(phrase("live_too_short"));
    } else {
      this.recorded = samples;
      if (this.option) this.option.hidden = false;
      if (this.radio) {
        // The recording becomes the chosen motion at once: it is what the visitor just made.
        this.radio.disabled = false;
        this.radio.checked = true;
        this.radio.form.dispatchEvent(new Event("change"));
      }
      this.stoppedAt = performance.now();
      setTimeout(() => this.syncButtons(), REARM_MS);
      const seconds = (samples.yaw.length / FPS).toFixed(1);
      this.say(phrase("live_recorded", { seconds }));
      this.dispatchEvent(new CustomEvent("recorded", { detail: this.curves() }));
    }
    this.syncButtons();
  }

  startPlaying() {
    if (!this.recorded || this.record) return;
    const ease = this.rig.constants.loop_samples;
    const curves = Object.fromEntries(this.rig.channels.map((ch) => [ch, closeLoop(this.recorded[ch], ease)]));
    this.play = { start: performance.now(), curves, n: this.recorded.yaw.length };
    this.say(phrase("live_playing"));
    this.syncButtons();
    this.schedule();
  }

  stopPlaying() {
    if (!this.play) return;
    this.play = null;
    this.say(phrase("live_stopped"));
    this.syncButtons();
    this.schedule();
  }

  playValues(now) {
    const { curves, n, start } = this.play;
    const i = Math.floor(((now - start) / 1000) * FPS) % n;
    this.$("live-time").textContent = phrase("live_time", { seconds: (i / FPS).toFixed(1) });
    return Object.fromEntries(Object.keys(curves).map((ch) => [ch, curves[ch][i]]));
  }

  syncButtons() {
    const rec = this.$("live-record");
    const play = this.$("live-play");
    const n = this.record ? this.record.samples.yaw.length : 0;
    rec.textContent = phrase(this.record ? "live_stop_recording" : this.recorded ? "live_record_again" : "live_record");
    rec.setAttribute("aria-pressed", String(Boolean(this.record)));
    const rearming = !this.record && this.stoppedAt && performance.now() - this.stoppedAt < REARM_MS;
    rec.disabled = (Boolean(this.record) && n < RECORD_MIN) || Boolean(rearming);
    play.textContent = phrase(this.play ? "live_stop_playing" : "live_play");
    play.setAttribute("aria-pressed", String(Boolean(this.play)));
    play.disabled = !this.recorded || Boolean(this.record);
    this.panel.classList.toggle("is-recording", Boolean(this.record));
    if (!this.record && !this.play) this.$("live-time").textContent = "";
  }

  say(text) {
    this.$("live-status").textContent = text;
  }

  // The recording as the job's motion_curves: {"fps": 24, "channels": {...}}; null before one is made.
  curves() {
    if (!this.recorded) return null;
    const channels = {};
    for (const ch of Object.keys(this.recorded)) {
      const lim = (this.rig && this.rig.limits[ch]) || [-Infinity, Infinity];
      channels[ch] = this.recorded[ch].map((v) => round(clamp(v, lim[0], lim[1])));
    }
    return { fps: FPS, channels };
  }

  // --- for tests and the benchmark: the page's own view, nothing the visitor could not do by hand ----------

  // Set channel values at once (the follows jump there, breathing and playback stop) and draw them now.
  setValues(values) {
    this.stopPlaying();
    this.stop();
    this.$("live-breath").checked = false;
    const v = fullValues({ ...this.shown, ...values }, this.rig);
    for (const [ch, f] of Object.entries(this.look)) f.jump(v[ch]);
    this.breath.jump(v.breath);
    this.roll = v.roll;
    for (const [ch, input] of Object.entries(this.sliders)) input.value = String(v[ch]);
    this.draw(v);
    return v;
  }

  values() {
    return { ...this.shown };
  }

  // Draw the shown values now and return the frame: {width, height, rgb: base64 of W*H*3 bytes, top row first}.
  snapshot() {
    if (!this.renderer) return null;
    this.renderer.draw(this.shown);
    const rgba = this.renderer.pixels();
    const rgb = new Uint8Array((rgba.length / 4) * 3);
    for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
      rgb[j] = rgba[i];
      rgb[j + 1] = rgba[i + 1];
      rgb[j + 2] = rgba[i + 2];
    }
    let text = "";
    for (let i = 0; i < rgb.length; i += 0x8000) text += String.fromCharCode(...rgb.subarray(i, i + 0x8000));
    return { width: this.rig.width, height: this.rig.height, rgb: btoa(text), values: this.values() };
  }

  state() {
    return {
      ready: Boolean(this.renderer),
      animating: Boolean(this.raf),
      recording: this.record ? this.record.samples.yaw.length : 0,
      recorded: this.recorded ? this.recorded.yaw.length : 0,
      playing: Boolean(this.play),
      values: this.values(),
      foldScale: this.renderer ? this.renderer.foldScale : 1, // < 1: a fold-prone pose, scaled down
    };
  }
}
