// The upload form: pick or drop a photo, preview it, check it, choose a motion, consent, send.
import { api, ApiError } from "./api.js";
import { FacePicker } from "./faces.js";
import { LiveView } from "./live.js";
import { clockText, errorHelp, phrase, phraseParts, planText } from "./words.js";

// Refusals of the motion or seed sent with the photo check: the photo itself is fine, so its report stays.
const MOTION_PROBLEMS = new Set(["unknown_motion", "invalid_motion", "invalid_seed"]);
const REPLAN_MS = 450; // a pause in typing before the chosen motion's plan is asked for

export class UploadForm extends EventTarget {
  constructor(section) {
    super();
    this.section = section;
    this.form = section.querySelector("#upload-form");
    this.$ = (id) => section.querySelector(`#${id}`);
    this.file = null;
    this.previewUrl = null;
    this.checkToken = 0;
    this.photoOk = false;
    this.planned = null; // {motion, seed} of the plan the photo check showed
    this.quota = null;
    this.form.noValidate = true; // our own messages, next to the control, in plain words
    // "Direct it live" (live.js): with WebGL2 the photo check also brings the photo's rig to draw.
    const livePanel = section.querySelector("#live");
    this.live = livePanel ? new LiveView(livePanel, this.$("motion-recorded")) : null;
    this.liveOk = null; // WebGL2 or not: asked at the first photo, not while the page paints
    // Group photos (faces.js): who moves; the live view keeps the others still as the clip will.
    const picker = section.querySelector("#face-picker");
    this.faces = picker ? new FacePicker(picker) : null;
    if (this.faces && this.live) {
      this.faces.addEventListener("change", () => this.live.setChosenFaces(this.faces.chosenBoxes()));
    }

    for (const input of [this.$("photo"), this.$("photo-camera")]) {
      input.addEventListener("change", () => input.files.length && this.choose(input.files[0]));
    }
    this.bindDrop(this.$("dropzone"));
    this.$("preview").addEventListener("error", () => (this.$("preview").hidden = true));
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.$("consent").addEventListener("change", () => this.clearError());
    // One motion is chosen at a time: typed words unselect the motions above (they are what is sent), and
    // a motion picked above wins over the words until the visitor types again. Each choice gets its plan.
    this.lastRadio = null; // the motion picked above before the visitor typed, restored if the words go
    this.replanTimer = null;
    this.form.addEventListener("change", (e) => {
      if (e.target.id === "motion-text" || e.target.id === "consent") return;
      this.syncPlan();
      this.replanSoon();
    });
    this.$("motion-text").addEventListener("input", () => this.typed());
    // The live view records up to the clip's length.
    this.$("duration").addEventListener("change", () => this.live && this.live.setMaxSeconds(this.duration()));
    if (this.live) {
      this.live.setMaxSeconds(this.duration());
      this.live.addEventListener("recorded", () => this.syncLengths());
      this.live.addEventListener("forgotten", () => this.syncLengths());
    }
  }

  duration() {
    return Number(this.$("duration").value);
  }

  // A clip is never shorter than the recording it plays: shorter lengths are not offered while one is kept.
  syncLengths() {
    const recorded = this.live ? this.live.recordedSeconds() : 0;
    for (const option of this.$("duration").options) option.disabled = Number(option.value) < recorded - 1e-9;
  }

  // 4K is offered when the photo check says the photo has the pixels for it.
  offerSizes(resolutions) {
    const uhd = (resolutions || []).includes("4k");
    const input = this.$("size-4k-input");
    this.$("size-4k").hidden = !uhd;
    input.disabled = !uhd;
    if (!uhd && input.checked) this.form.querySelector("input[name=resolution][value=hd]").checked = true;
  }

  bindDrop(zone) {
    let depth = 0;
    zone.addEventListener("dragenter", (e) => {
      e.preventDefault();
      depth += 1;
      zone.classList.add("is-dragging");
    });
    zone.addEventListener("dragover", (e) => e.preventDefault());
    zone.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) zone.classList.remove("is-dragging");
    });
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      depth = 0;
      zone.classList.remove("is-dragging");
      const file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) this.choose(file);
    });
    // A photo dropped just outside the zone must not replace the page with the photo.
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
  }

  choose(file) {
    this.file = file;
    this.clearError();
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = URL.createObjectURL(file);
    const preview = this.$("preview");
    preview.src = this.previewUrl;
    preview.hidden = false;
    this.$("dropzone-file").textContent = file.name || "Your photo";
    this.$("dropzone-drag").textContent = "— drag another photo here, or";
    this.section.querySelector("label[for=photo]").textContent = "Choose another photo";
    this.check(file);
  }

  async check(file) {
    const token = ++this.checkToken;
    const panel = this.$("photo-check");
    const tips = this.$("check-tips");
    panel.hidden = false;
    panel.classList.remove("is-bad");
    this.$("check-verdict").textContent = "Checking your photo…";
    this.$("check-score").value = 0;
    this.$("check-score-text").textContent = "";
    tips.replaceChildren();
    this.planned = null;
    this.photoOk = false; // until this check says so: no plans are asked of a photo that is refused
    this.offerSizes(null);
    if (this.live) this.live.hide(); // the old photo's live view and recording go with it
    if (this.faces) this.faces.hide();
    this.syncPlan();
    const body = new FormData();
    body.append("photo", file);
    const motion = this.motion();
    if (motion && motion !== "recorded") body.append("motion", motion);
    const duration = this.duration();
    body.append("duration_s", String(duration));
    try {
      if (this.live && this.liveOk === null) this.liveOk = LiveView.supported();
      const result = await api(this.liveOk ? "/photo-check?rig=true" : "/photo-check", { method: "POST", body });
      if (token !== this.checkToken) return;
      const problem = result && result.ok === false ? result.problem : null;
      this.offerSizes(result && result.resolutions);
      if (problem && MOTION_PROBLEMS.has(problem.code)) {
        this.showQuality(result);
        this.showLive(result, file);
        this.showError(errorHelp(problem.code, problem.message));
      } else if (problem) {
        this.showCheckProblem(problem.code, problem.message);
      } else {
        this.showQuality(result);
        this.photoOk = true;
        this.showPlan(result, motion, duration);
        if (this.faces) this.faces.show(result.faces, this.previewUrl);
        this.showLive(result, file);
        this.revealCheck();
        this.replanSoon(); // the visitor may have chosen another motion while the photo was checked
      }
    } catch (err) {
      if (token !== this.checkToken) return;
      if (err instanceof ApiError) this.showCheckProblem(err.code, err.message);
    }
  }

  // On a small screen the check's answer lands below the photo's buttons: bring it into view, once,
  // unless it already is.
  revealCheck() {
    const panel = this.$("photo-check");
    const box = panel.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
    panel.scrollIntoView({ block: "nearest", behavior: still ? "auto" : "smooth" });
  }

  showLive(result, file) {
    if (!this.live) return;
    if (!this.liveOk) this.live.unsupported();
    else if (result.rig) this.live.show(result.rig, file);
  }

  showQuality(result) {
    const photo = result.photo || result;
    const quality = photo.quality || result.quality || {};
    let score = Number(quality.score ?? 0);
    if (score <= 1) score *= 100; // the report may say 0–1 or 0–100
    score = Math.round(score);
    this.$("check-score").value = score;
    this.$("check-score-text").textContent = `${score}/100`;
    const verdict =
      quality.verdict_text ||
      { good: "Looks great", ok: "This should work", fair: "This should work", poor: "This may not work well" }[
        quality.verdict
      ] ||
      (score >= 70 ? "Looks great" : score >= 45 ? "This should work" : "This may not work well");
    this.$("check-verdict").textContent = `${verdict}.`;
    const tips = (quality.tips || []).map((tip) => {
      const li = document.createElement("li");
      li.textContent = typeof tip === "string" ? tip : tip.message || tip.text || "";
      return li;
    });
    if (!tips.length) {
      const li = document.createElement("li");
      li.textContent = "No tips: the face is clear and well framed.";
      tips.push(li);
    }
    this.$("check-tips").replaceChildren(...tips);
    if (photo.width && photo.height) {
      const li = document.createElement("li");
      li.className = "tip-size";
      li.textContent = `${photo.width} × ${photo.height} pixels.`;
      this.$("check-tips").append(li);
    }
  }

  // What the chosen motion will do with this photo in a clip of this length, as the check planned it
  // (with the seed it used).
  showPlan(result, motion, duration) {
    const text = planText(result.plan);
    this.$("check-plan").textContent = text;
    this.$("check-plan").classList.remove("plan-problem");
    this.planned = text ? { motion, duration, seed: result.seed } : null;
    this.syncPlan();
  }

  typed() {
    const checked = this.form.querySelector("input[name=motion]:checked");
    if (this.$("motion-text").value.trim()) {
      if (checked) {
        this.lastRadio = checked;
        checked.checked = false;
      }
    } else if (!checked) {
      const back = this.lastRadio && !this.lastRadio.disabled ? this.lastRadio : null;
      (back || this.form.querySelector("input[name=motion][value=auto]") || {}).checked = true;
    }
    this.syncPlan();
    this.replanSoon();
  }

  // The plan of the motion chosen now, asked of the photo check once the visitor pauses (a recording's
  // words come with its job). The check is the same one the photo had: no job, no allowance spent.
  replanSoon() {
    clearTimeout(this.replanTimer);
    const motion = this.motion();
    if (!this.file || !this.photoOk || !motion || motion === "recorded" || this.plannedNow()) return;
    this.replanTimer = setTimeout(() => this.replan(motion, this.duration()), REPLAN_MS);
  }

  async replan(motion, duration) {
    const token = this.checkToken;
    const body = new FormData();
    body.append("photo", this.file);
    body.append("motion", motion);
    body.append("duration_s", String(duration));
    let result;
    try {
      result = await api("/photo-check", { method: "POST", body });
    } catch {
      return; // the plan line stays hidden; the job itself still checks everything
    }
    if (token !== this.checkToken || motion !== this.motion() || duration !== this.duration()) return;
    const problem = result && result.ok === false ? result.problem : null;
    if (problem && MOTION_PROBLEMS.has(problem.code)) {
      const help = errorHelp(problem.code, problem.message);
      this.$("check-plan").textContent = [help.title, help.message].filter(Boolean).join(" ");
      this.$("check-plan").classList.add("plan-problem");
      this.planned = { motion, duration, seed: null };
      this.syncPlan();
    } else if (!problem) {
      this.showPlan(result, motion, duration);
    }
  }

  plannedNow() {
    const p = this.planned;
    return p && p.motion === this.motion() && p.duration === this.duration() ? p : null;
  }

  syncPlan() {
    this.$("check-plan").hidden = !this.plannedNow();
  }

  showCheckProblem(code, message) {
    this.$("photo-check").hidden = true;
    this.showError(errorHelp(code, message));
  }

  // A success ("Deleted.") in the same place as errors, but styled and announced as one.
  showNotice(help) {
    this.showError(help, null, "ok");
  }

  showError(help, focusTarget = null, kind = "error") {
    const box = this.$("form-error");
    box.classList.toggle("notice-ok", kind === "ok");
    box.classList.toggle("notice-error", kind !== "ok");
    box.setAttribute("role", kind === "ok" ? "status" : "alert");
    box.replaceChildren();
    const p = document.createElement("p");
    const strong = document.createElement("strong");
    strong.textContent = help.title;
    p.append(strong, help.message ? ` ${help.message}` : "");
    box.append(p);
    if (help.next) {
      const next = document.createElement("p");
      next.textContent = help.next;
      box.append(next);
    }
    box.hidden = false;
    (focusTarget || box).focus();
  }

  clearError() {
    this.$("form-error").hidden = true;
  }

  // The chosen motion: the one picked above, else the typed words (typing unselects those above).
  motion() {
    if (this.recordedChosen()) return "recorded";
    const checked = this.form.querySelector("input[name=motion]:checked:not([value=recorded])");
    if (checked) return checked.value;
    return this.$("motion-text").value.trim();
  }

  recordedChosen() {
    const radio = this.$("motion-recorded-input");
    return Boolean(radio && radio.checked && !radio.disabled && this.live && this.live.curves());
  }

  async submit() {
    if (!this.file) {
      return this.showError(errorHelp("missing_photo", ""), this.$("photo"));
    }
    if (!this.$("consent").checked) {
      return this.showError(errorHelp("consent_required", ""), this.$("consent"));
    }
    const button = this.$("submit");
    button.disabled = true;
    button.textContent = "Sending your photo…";
    const body = new FormData();
    body.append("photo", this.file);
    body.append("consent", "true");
    const motion = this.motion();
    if (motion === "recorded") {
      // What the visitor directed live is the motion: the curves instead of a motion name.
      body.append("motion_curves", JSON.stringify(this.live.curves()));
    } else if (motion) {
      body.append("motion", motion);
    }
    // The seed of the plan shown, so the job does what the page said; later jobs get fresh seeds.
    const planned = this.plannedNow();
    if (planned && planned.seed != null) body.append("seed", String(planned.seed));
    body.append("duration_s", String(this.duration()));
    const size = this.form.querySelector("input[name=resolution]:checked");
    if (size && !size.disabled) body.append("resolution", size.value);
    const chosen = this.faces && this.faces.chosenText();
    if (chosen) body.append("faces", chosen);
    try {
      const job = await api("/jobs", { method: "POST", body });
      this.planned = null;
      this.syncPlan();
      this.dispatchEvent(new CustomEvent("created", { detail: { job, thumb: this.previewUrl } }));
    } catch (err) {
      if (err instanceof ApiError && err.status === 429 && err.code !== "rate_limited") {
        const help = errorHelp("quota_exceeded", "");
        if (this.quota && this.quota.resets_at) help.next = `You can animate again ${clockText(this.quota.resets_at)}.`;
        this.showError(help);
      } else {
        this.showError(errorHelp(err.code, err.message));
      }
    } finally {
      button.textContent = "Animate my photo";
      this.refreshQuota();
    }
  }

  async refreshQuota() {
    try {
      this.quota = await api("/quota");
    } catch {
      this.$("submit").disabled = false;
      return;
    }
    const q = this.quota;
    const el = this.$("quota");
    el.replaceChildren();
    const count = document.createElement("strong");
    if (q.remaining > 0) {
      count.textContent = phrase("quota_count", { remaining: q.remaining, limit: q.limit });
      el.append(...phraseParts(q.limit === 1 ? "quota_left_one" : "quota_left_many", { count }));
    } else {
      count.textContent = phrase("quota_used_count", { limit: q.limit });
      const more = q.resets_at ? phrase("quota_more_at", { when: clockText(q.resets_at) }) : phrase("quota_more_tomorrow");
      el.append(...phraseParts("quota_used", { count }), ` ${more}`);
    }
    this.$("submit").disabled = q.remaining <= 0;
  }

  // Back to the form with the same photo: choose another motion and send again.
  again() {
    this.section.hidden = false;
    if (this.live) this.live.schedule();
    this.clearError();
    const first = this.form.querySelector("input[name=motion]:checked") || this.$("motion-text");
    this.$("motion-legend").scrollIntoView({ behavior: "smooth", block: "start" });
    first.focus({ preventScroll: true });
    return Boolean(this.file);
  }
}
