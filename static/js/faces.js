// Group photos: the photo check's faces drawn as boxes over the photo; the visitor taps the movable ones
// on or off (all on at first). The job gets the chosen numbers (`faces`), and the live view keeps the
// others still, matched to its rig's faces by overlap as the worker matches them (models/face.py
// chosen_faces), so the canvas and the clip agree.

const MIN_IOU = 0.3;

function iou(a, b) {
  const iw = Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih;
  return inter / Math.max(1e-6, a[2] * a[3] + b[2] * b[3] - inter);
}

// The rig's faces (numbers) that none of the chosen boxes (x, y, w, h fractions) picks; null chosen: none.
export function stillRigFaces(rig, chosenBoxes) {
  const still = new Set();
  if (!rig || !chosenBoxes) return still;
  const found = rig.faces.map((f) => [f.box[0], f.box[1], f.box[2] - f.box[0], f.box[3] - f.box[1]]);
  const picked = new Set();
  for (const [x, y, w, h] of chosenBoxes) {
    const mine = [x * rig.width, y * rig.height, w * rig.width, h * rig.height];
    let best = -1;
    let bestIou = 0;
    found.forEach((box, i) => {
      const o = iou(mine, box);
      if (o > bestIou) [best, bestIou] = [i, o];
    });
    if (best >= 0 && bestIou >= MIN_IOU) picked.add(best);
  }
  found.forEach((_, i) => !picked.has(i) && still.add(i));
  return still;
}

export class FacePicker extends EventTarget {
  constructor(root) {
    super();
    this.root = root;
    this.image = root.querySelector(".face-picker-photo");
    this.boxes = root.querySelector(".face-picker-boxes");
    this.note = root.querySelector(".face-picker-note");
    this.faces = [];
    this.on = new Set();
  }

  // The photo check's `faces`: shown where there is more than one face, every movable one on.
  show(faces, photoUrl) {
    this.faces = Array.isArray(faces) ? faces : [];
    this.on = new Set(this.faces.filter((f) => f.movable).map((f) => f.index));
    if (this.faces.length < 2) return this.hide();
    this.image.src = photoUrl;
    this.boxes.replaceChildren(...this.faces.map((f) => this.button(f)));
    this.root.hidden = false;
    this.sync();
  }

  hide() {
    this.faces = [];
    this.on = new Set();
    this.root.hidden = true;
    this.boxes.replaceChildren();
    this.dispatchEvent(new Event("change"));
  }

  button(face) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "face-box";
    b.dataset.index = String(face.index);
    const [x, y, w, h] = face.box;
    Object.assign(b.style, { left: `${x * 100}%`, top: `${y * 100}%`, width: `${w * 100}%`, height: `${h * 100}%` });
    if (face.movable) {
      b.addEventListener("click", () => this.toggle(face.index));
    } else {
      b.disabled = true;
      b.classList.add("face-box-fixed");
    }
    return b;
  }

  toggle(index) {
    if (this.on.has(index)) {
      if (this.on.size === 1) return; // someone has to move
      this.on.delete(index);
    } else {
      this.on.add(index);
    }
    this.sync();
  }

  sync() {
    for (const b of this.boxes.children) {
      const index = Number(b.dataset.index);
      const face = this.faces.find((f) => f.index === index);
      const on = this.on.has(index);
      b.setAttribute("aria-pressed", String(on));
      b.setAttribute("aria-label", face && face.movable
        ? `Face ${index + 1}: ${on ? "moves" : "keeps still"}. Tap to ${on ? "keep it still" : "animate it"}.`
        : `Face ${index + 1}: keeps still (only the ${this.movableCount()} largest faces can move).`);
    }
    const still = this.faces.length - this.on.size;
    this.note.textContent = still
      ? `${this.on.size} of ${this.faces.length} faces will move; the others keep still.`
      : `Every face will move. Tap a face to keep it still.`;
    this.dispatchEvent(new Event("change"));
  }

  movableCount() {
    return this.faces.filter((f) => f.movable).length;
  }

  // The form's `faces` ("0,2"), or null when every movable face moves (the default).
  chosenText() {
    if (!this.faces.length || this.on.size === this.movableCount()) return null;
    return [...this.on].sort((a, b) => a - b).join(",");
  }

  // The chosen faces' boxes for the live view, or null when every movable face moves.
  chosenBoxes() {
    if (this.chosenText() === null) return null;
    return this.faces.filter((f) => this.on.has(f.index)).map((f) => f.box);
  }
}
