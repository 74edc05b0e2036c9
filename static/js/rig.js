// The portrait rig in the browser: parse the photo check's rig (models/portrait/mesh.py, format
// "vivify-rig" version 2) and draw a frame of it with WebGL2, exactly as the server renders one
// (docs/rig.md, "How to render a frame"): the vertices moved on the CPU, one draw call, the eye edit per
// fragment, the photo sampled bilinearly at the rest position each fragment carries. Every number the
// server shares with this file (the channels, the fold guard's, the eye edit's, the lids' sample count,
// the recording's loop) comes in the rig's JSON: none is written here.

export const FPS = 24; // the clip's frame rate, and the recording's

const MAX_EYES = 8; // 4 faces' worth; more are left without eye edits (the server's photo check allows 3)
const EYE_GROW_PX = 2; // the eye box grown a little, as the server's patch is
const CONSTANTS = ["min_area_ratio", "fold_steps", "knots", "lid_close", "gaze_u", "gaze_v", "taper", "loop_samples"];

function bytesOf(b64) {
  const text = atob(b64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) bytes[i] = text.charCodeAt(i);
  return bytes.buffer;
}

// Little-endian typed arrays from base64 (every browser WebGL2 runs on is little-endian; checked).
function typed(b64, Type) {
  const buffer = bytesOf(b64);
  if (buffer.byteLength % Type.BYTES_PER_ELEMENT) throw new Error("a typed array's bytes do not divide evenly");
  return new Type(buffer);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// The rig's JSON as arrays: vertices (2V), triangles (3T), disp (R x V x 2 floats, pixels per unit).
export function parseRig(json) {
  if (!json || json.format !== "vivify-rig" || json.version !== 2) throw new Error("not a vivify-rig version 2");
  if (!LITTLE_ENDIAN) throw new Error("a big-endian browser cannot read the rig");
  const width = Number(json.width);
  const height = Number(json.height);
  const vertices = typed(json.vertices, Float32Array);
  const count = vertices.length / 2;
  const triangles = typed(json.triangles, json.index_bytes === 4 ? Uint32Array : Uint16Array);
  const rows = json.rows.map((r) => ({ channel: r.channel, face: r.face, scale: Number(r.scale) }));
  const quantised = typed(json.displacements, Int16Array);
  if (quantised.length !== rows.length * count * 2) throw new Error("the displacements do not fit the mesh");
  const disp = new Float32Array(quantised.length);
  rows.forEach((row, r) => {
    const base = r * count * 2;
    for (let i = 0; i < count * 2; i += 1) disp[base + i] = quantised[base + i] * row.scale;
  });
  for (const index of triangles) if (index >= count) throw new Error("a triangle names a missing vertex");
  const constants = {};
  for (const name of CONSTANTS) {
    constants[name] = Number(json.constants && json.constants[name]);
    if (!Number.isFinite(constants[name])) throw new Error(`the rig does not give its ${name}`);
  }
  const channels = Array.from(json.channels || [], String);
  if (!channels.length) throw new Error("the rig names no channels");
  const rig = { width, height, vertices, count, triangles, rows, disp, channels, constants,
    faces: json.faces || [], limits: json.limits || {} };
  rig.restAreas = areas(rig, vertices);
  return rig;
}

// Twice the signed area of every triangle at positions P (2V floats).
function areas(rig, P, out = new Float32Array(rig.triangles.length / 3)) {
  const t = rig.triangles;
  for (let i = 0, j = 0; i < t.length; i += 3, j += 1) {
    const a = 2 * t[i], b = 2 * t[i + 1], c = 2 * t[i + 2];
    out[j] = (P[b] - P[a]) * (P[c + 1] - P[a + 1]) - (P[b + 1] - P[a + 1]) * (P[c] - P[a]);
  }
  return out;
}

export function clamp(x, lo, hi) {
  return Math.min(hi, Math.max(lo, x));
}

// Every channel of the rig, missing ones 0, clamped to its limits (without a rig: the values given).
export function fullValues(values, rig = null) {
  const out = {};
  const limits = rig ? rig.limits : {};
  for (const ch of rig ? rig.channels : Object.keys(values)) {
    const v = Number(values[ch] ?? 0) || 0;
    const lim = limits[ch];
    out[ch] = lim ? clamp(v, lim[0], lim[1]) : v;
  }
  return out;
}

// Whether a displacement row moves: a face the visitor left out keeps still (rig.still, a Set of face
// numbers), and the picture's own rows (breathing, which stretches every person) stop as soon as one face
// is left out, as models/portrait/animator.py plan_to_channels does.
function rowMoves(rig, row) {
  const still = rig.still;
  if (!still || !still.size) return true;
  return row.face === null || row.face === undefined ? false : !still.has(row.face);
}

// P_v = V_v + scale * sum_r c[rows[r].channel] * D[r, v], into `out` (2V floats).
export function moveVertices(rig, values, out = new Float32Array(rig.vertices.length), scale = 1) {
  out.set(rig.vertices);
  const n = rig.count * 2;
  rig.rows.forEach((row, r) => {
    if (!rowMoves(rig, row)) return;
    const c = scale * Number(values[row.channel] || 0);
    if (!c) return;
    const d = rig.disp;
    const base = r * n;
    for (let i = 0; i < n; i += 1) out[i] += c * d[base + i];
  });
  return out;
}

// The fold guard, the server's own (models/portrait/mesh.py FoldGuard): when some triangle of the moved
// mesh would keep less than min_area_ratio of its rest area, the head, face and breath motion is scaled
// to the largest fraction that keeps every triangle above it (bisection, fold_steps halvings), so a pose
// past the limit eases to a stop instead of jumping.
export function moveVerticesGuarded(rig, values, out = new Float32Array(rig.vertices.length)) {
  const moved = rig.movedAreas || (rig.movedAreas = new Float32Array(rig.triangles.length / 3));
  const { min_area_ratio: minRatio, fold_steps: steps } = rig.constants;
  const fits = (scale) => minAreaRatio(rig, areas(rig, moveVertices(rig, values, out, scale), moved)) >= minRatio;
  if (fits(1)) return 1;
  let lo = 0;
  let hi = 1;
  for (let k = 0; k < steps; k += 1) {
    const mid = (lo + hi) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  moveVertices(rig, values, out, lo);
  return lo;
}

function minAreaRatio(rig, moved) {
  let low = Infinity;
  const rest = rig.restAreas;
  for (let j = 0; j < rest.length; j += 1) if (rest[j] > 1e-6) low = Math.min(low, moved[j] / rest[j]);
  return low;
}

const smoothstep = (x) => x * x * (3 - 2 * x);

// models.motion_curves.close_loop: the last L samples (at most `loopSamples`, the rig's loop_samples)
// ease toward the first, so the clip loops.
export function closeLoop(curve, loopSamples) {
  const c = Array.from(curve, Number);
  const n = c.length;
  const L = Math.min(loopSamples, Math.floor(n / 4));
  for (let i = n - L; i < n; i += 1) {
    const w = smoothstep((i - (n - L) + 1) / (L + 1));
    c[i] = c[i] + w * (c[0] - c[i]);
  }
  return c;
}

const VERTEX = `#version 300 es
in vec2 aPos;
in vec2 aRest;
uniform vec2 uSize;
out vec2 vS;
void main() {
  vS = aRest;
  gl_Position = vec4(2.0 * aPos.x / uSize.x - 1.0, 1.0 - 2.0 * aPos.y / uSize.y, 0.0, 1.0);
}`;

// Two programs, one per frame: without the eye edit (no eye state active: the photo at s) and with it.
const fragment = (eyes) => `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
${eyes ? "#define EYES 1" : ""}
uniform sampler2D uPhoto;
uniform vec2 uSize;
in vec2 vS;
out vec4 colour;
#ifdef EYES
uniform sampler2D uEyes;   // R32F, one row of floats per eye (layout in eyeData)
uniform int uEyeCount;
uniform vec4 uBoxes[${MAX_EYES}]; // each eye's box, grown: a cheap test before any texel is read
uniform vec3 uEyeState;    // blink, gaze_x, gaze_y
uniform int uKnots;        // lid samples per lid
uniform vec4 uEdit;        // lid_close, gaze_u, gaze_v, taper

float at(int e, int i) { return texelFetch(uEyes, ivec2(i, e), 0).r; }

// numpy.interp(u, linspace(0, length, uKnots), curve), clamped at the ends.
float lid(int e, int base, float u, float len) {
  float last = float(uKnots - 1);
  float t = clamp(u / len * last, 0.0, last);
  int i = min(int(floor(t)), uKnots - 2);
  return mix(at(e, base + i), at(e, base + i + 1), t - float(i));
}

vec2 editEyes(vec2 s) {
  float blink = uEyeState.x, gx = uEyeState.y, gy = uEyeState.z;
  bool gaze = abs(gx) > 1e-3 || abs(gy) > 1e-3;
  {
    for (int e = 0; e < ${MAX_EYES}; e++) {
      if (e >= uEyeCount) break;
      vec4 box = uBoxes[e];
      if (s.x < box.x || s.y < box.y || s.x > box.z || s.y > box.w) continue;
      vec2 origin = vec2(at(e, 0), at(e, 1));
      vec2 eu = vec2(at(e, 2), at(e, 3));
      vec2 ev = vec2(at(e, 4), at(e, 5));
      float len = at(e, 6), gap = at(e, 7), skin = at(e, 8), sgn = at(e, 9);
      vec2 d = s - origin;
      float u = d.x * eu.x + d.y * eu.y;
      float v = d.x * ev.x + d.y * ev.y;
      float top = lid(e, 16, u, len);
      float bottom = lid(e, 16 + uKnots, u, len);
      float opening = bottom - top;
      bool insideU = u > 0.0 && u < len;
      if (blink > 1e-3) {
        float edge = top + uEdit.x * blink * opening;
        float skinTop = top - skin;
        if (insideU && v >= skinTop && v < edge) {
          float ratio = skin / (skin + uEdit.x * blink * opening);
          v = skinTop + (v - skinTop) * ratio;
        }
      }
      if (gaze) {
        float taper = uEdit.w * opening + 1e-3;
        float window = sin(3.141592653589793 * clamp(u / len, 0.0, 1.0))
          * clamp((v - top) / taper, 0.0, 1.0) * clamp((bottom - v) / taper, 0.0, 1.0);
        u = u - gx * uEdit.y * len * sgn * window;
        v = v - gy * uEdit.z * gap * window;
      }
      s = origin + u * eu + v * ev;
    }
  }
  return s;
}
#endif

void main() {
#ifdef EYES
  vec2 s = editEyes(vS);
#else
  vec2 s = vS;
#endif
  colour = vec4(texture(uPhoto, s / uSize).rgb, 1.0);
}`;

// One row per eye: origin(2) eu(2) ev(2) length gap skin sign box(4 at 10..13) upper(knots at 16)
// lower(knots after it).
function eyeData(faces, knots, still = null) {
  const texels = 16 + 2 * knots;
  const eyes = faces.flatMap((f, i) => (still && still.has(i) ? [] : f.eyes || [])).slice(0, MAX_EYES);
  const data = new Float32Array(MAX_EYES * texels);
  eyes.forEach((eye, e) => {
    const row = data.subarray(e * texels, (e + 1) * texels);
    row.set([...eye.origin, ...eye.eu, ...eye.ev, eye.length, eye.gap, eye.skin]);
    row[9] = Math.sign(eye.eu[0] || 1); // numpy.sign(eu.x or 1)
    const [x0, y0, x1, y1] = eye.box;
    row.set([x0 - EYE_GROW_PX, y0 - EYE_GROW_PX, x1 + EYE_GROW_PX, y1 + EYE_GROW_PX], 10);
    if (eye.upper.length !== knots || eye.lower.length !== knots) throw new Error("an eye's lids need the rig's knots");
    row.set(eye.upper, 16);
    row.set(eye.lower, 16 + knots);
  });
  const boxes = new Float32Array(MAX_EYES * 4);
  eyes.forEach((_, e) => boxes.set(data.subarray(e * texels + 10, e * texels + 14), e * 4));
  return { data, count: eyes.length, boxes, texels };
}

export function webgl2Available() {
  try {
    const canvas = document.createElement("canvas");
    return Boolean(canvas.getContext("webgl2"));
  } catch {
    return false;
  }
}

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader) || "shader");
  return shader;
}

// Draws the rig on `canvas` (sized W x H, the rig's own pixels) from `photo` (an ImageBitmap, image or
// canvas of the photo; drawn into a W x H canvas first so it is sampled at the server's resolution).
export class RigRenderer {
  constructor(canvas, rig, photo) {
    this.canvas = canvas;
    this.rig = rig;
    canvas.width = rig.width;
    canvas.height = rig.height;
    const gl = canvas.getContext("webgl2", { alpha: false, antialias: false, depth: false, stencil: false,
      premultipliedAlpha: false, preserveDrawingBuffer: false, powerPreference: "low-power" });
    if (!gl) throw new Error("WebGL2 is not available");
    this.gl = gl;
    const vertex = compile(gl, gl.VERTEX_SHADER, VERTEX);
    const link = (eyes) => {
      const program = gl.createProgram();
      gl.attachShader(program, vertex);
      gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, fragment(eyes)));
      gl.bindAttribLocation(program, 0, "aPos"); // both programs read the one vertex array
      gl.bindAttribLocation(program, 1, "aRest");
      gl.linkProgram(program);
      if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program) || "link");
      return program;
    };
    this.plain = link(false);
    this.withEyes = link(true);

    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    this.positions = new Float32Array(rig.vertices.length);
    this.posBuffer = this.attribute(0, rig.vertices, gl.DYNAMIC_DRAW);
    this.attribute(1, rig.vertices, gl.STATIC_DRAW);
    const index = gl.createBuffer();
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, index);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, rig.triangles, gl.STATIC_DRAW);
    this.indexType = rig.triangles instanceof Uint32Array ? gl.UNSIGNED_INT : gl.UNSIGNED_SHORT;

    // The photo, at the rig's size, as a texture: bilinear, clamped to its edges.
    const flat = document.createElement("canvas");
    flat.width = rig.width;
    flat.height = rig.height;
    const ctx = flat.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(photo, 0, 0, rig.width, rig.height);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, flat);
    this.sampling(gl.LINEAR);

    // The eyes' parameters and lid curves, one row of floats per eye (read with texelFetch).
    gl.activeTexture(gl.TEXTURE1);
    this.eyeTexture = gl.createTexture();
    const eyes = this.uploadEyes();

    for (const program of [this.plain, this.withEyes]) {
      const loc = (name) => gl.getUniformLocation(program, name);
      gl.useProgram(program);
      gl.uniform1i(loc("uPhoto"), 0);
      gl.uniform2f(loc("uSize"), rig.width, rig.height);
      if (program === this.withEyes) {
        gl.uniform1i(loc("uEyes"), 1);
        this.eyeCount = loc("uEyeCount");
        this.eyeBoxes = loc("uBoxes");
        gl.uniform1i(this.eyeCount, eyes.count);
        gl.uniform4fv(this.eyeBoxes, eyes.boxes);
        const c = rig.constants;
        gl.uniform1i(loc("uKnots"), c.knots);
        gl.uniform4f(loc("uEdit"), c.lid_close, c.gaze_u, c.gaze_v, c.taper);
        this.eyeState = loc("uEyeState");
      }
    }
    this.hasEyes = eyes.count > 0;
    gl.viewport(0, 0, rig.width, rig.height);
    gl.disable(gl.DEPTH_TEST);
    gl.disable(gl.CULL_FACE);
    gl.disable(gl.BLEND);
  }

  // The eyes of the faces that move (a still face's eyes neither blink nor look), into texture unit 1.
  uploadEyes() {
    const gl = this.gl;
    const eyes = eyeData(this.rig.faces, this.rig.constants.knots, this.rig.still);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, this.eyeTexture);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.R32F, eyes.texels, MAX_EYES, 0, gl.RED, gl.FLOAT, eyes.data);
    this.sampling(gl.NEAREST);
    gl.activeTexture(gl.TEXTURE0);
    return eyes;
  }

  // Keep these faces (a Set of the rig's face numbers) still from the next frame on.
  setStill(still) {
    this.rig.still = still;
    const eyes = this.uploadEyes();
    const gl = this.gl;
    gl.useProgram(this.withEyes);
    gl.uniform1i(this.eyeCount, eyes.count);
    gl.uniform4fv(this.eyeBoxes, eyes.boxes);
    this.hasEyes = eyes.count > 0;
  }

  attribute(location, data, usage) {
    const gl = this.gl;
    const buffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ARRAY_BUFFER, data, usage);
    gl.enableVertexAttribArray(location);
    gl.vertexAttribPointer(location, 2, gl.FLOAT, false, 0, 0);
    return buffer;
  }

  sampling(filter) {
    const gl = this.gl;
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, filter);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, filter);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  }

  // One frame at channel values (missing channels 0): one draw call.
  draw(values) {
    const gl = this.gl;
    this.foldScale = moveVerticesGuarded(this.rig, values, this.positions);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, this.positions);
    const blink = Number(values.blink || 0);
    const gx = Number(values.gaze_x || 0);
    const gy = Number(values.gaze_y || 0);
    // The eye edit applies when any eye state is active (blink > 1e-3 or |gaze| > 1e-3).
    if (this.hasEyes && (blink > 1e-3 || Math.abs(gx) > 1e-3 || Math.abs(gy) > 1e-3)) {
      gl.useProgram(this.withEyes);
      gl.uniform3f(this.eyeState, blink, gx, gy);
    } else {
      gl.useProgram(this.plain);
    }
    gl.drawElements(gl.TRIANGLES, this.rig.triangles.length, this.indexType, 0);
  }

  // The frame just drawn, top row first, RGBA (call in the same task as draw()).
  pixels() {
    const gl = this.gl;
    const { width, height } = this.rig;
    const raw = new Uint8Array(width * height * 4);
    gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, raw);
    const out = new Uint8Array(raw.length);
    const stride = width * 4;
    for (let y = 0; y < height; y += 1) out.set(raw.subarray((height - 1 - y) * stride, (height - y) * stride), y * stride);
    return out;
  }

  destroy() {
    const ext = this.gl.getExtension("WEBGL_lose_context");
    if (ext) ext.loseContext();
  }
}
