// The job view (#job): live progress over Server-Sent Events (polling when they fail), the clip, errors.
import { api, ApiError } from "./api.js";
import { FINAL, errorHelp, expiresText, jobErrorHelp, jobTitle, planText, stageText, waitText } from "./words.js";

const POLL_MS = 1000;

export class JobView extends EventTarget {
  constructor(root) {
    super();
    this.root = root;
    this.job = null;
    this.source = null;
    this.pollTimer = null;
    this.$ = (id) => root.querySelector(`#${id}`);
    this.$("cancel-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.cancel();
    });
    this.$("delete-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.remove();
    });
    const video = this.$("job-video");
    const toggle = this.$("play-toggle");
    // A looping clip must be pausable (WCAG 2.2.2); reduced-motion visitors start paused. The HTML has no
    // autoplay (it would start before this runs): the clip starts here, for everyone else.
    const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
    video.autoplay = !still;
    if (still) toggle.textContent = "Play";
    else if (video.getAttribute("src")) video.play().catch(() => {});
    toggle.addEventListener("click", () => (video.paused ? video.play().catch(() => {}) : video.pause()));
    video.addEventListener("play", () => (toggle.textContent = "Pause"));
    video.addEventListener("pause", () => (toggle.textContent = "Play"));
    this.$("again").addEventListener("click", (e) => {
      // On the upload page the chosen photo is still in memory: go back to the form with it.
      // Otherwise (a job page opened directly) the form below animates the stored photo again.
      e.preventDefault();
      if (this.dispatchEvent(new CustomEvent("again", { cancelable: true, detail: this.job }))) {
        const first = this.$("again-form").querySelector("input[name=motion]:checked") || this.$("again-motion-text");
        first.scrollIntoView({ behavior: "smooth", block: "center" });
        first.focus({ preventScroll: true });
      }
    });
    this.$("again-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.animateAgain();
    });
  }

  // Start following a job (a Job JSON from the API or from the server-rendered data attributes).
  follow(job, { thumb = null } = {}) {
    this.stop();
    this.job = null;
    const img = this.$("job-thumb");
    if (thumb) {
      img.src = thumb;
      img.hidden = false;
    } else {
      img.hidden = true;
    }
    this.root.hidden = false;
    this.render(job);
    if (!FINAL.has(job.status)) this.listen(job);
  }

  async followId(id) {
    try {
      this.follow(await api(`/jobs/${encodeURIComponent(id)}`));
    } catch (err) {
      this.showError(err instanceof ApiError ? errorHelp(err.code, err.message) : errorHelp("", ""));
    }
  }

  listen(job) {
    const url = (job.urls && job.urls.events) || `/api/v1/jobs/${job.id}/events`;
    if (!("EventSource" in window)) return this.poll(job.id);
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener("job", (event) => {
      try {
        this.render(JSON.parse(event.data));
      } catch {
        /* a malformed event: the next one or the poll fallback catches up */
      }
    });
    source.addEventListener("error", () => {
      // The stream ended or broke before a final status: fall back to polling (no reconnect storm).
      if (this.source !== source) return;
      source.close();
      this.source = null;
      if (this.job && !FINAL.has(this.job.status)) this.poll(this.job.id);
    });
  }

  poll(id) {
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(async () => {
      try {
        this.render(await api(`/jobs/${encodeURIComponent(id)}`));
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) return this.gone();
      }
      if (this.job && this.job.id === id && !FINAL.has(this.job.status)) this.poll(id);
    }, POLL_MS);
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.pollTimer);
  }

  render(job) {
    const previous = this.job;
    if (previous && previous.id === job.id && FINAL.has(previous.status) && !FINAL.has(job.status)) return;
    this.job = job;
    this.root.dataset.jobId = job.id;
    this.root.dataset.status = job.status;
    const title = this.$("job-title");
    title.textContent = jobTitle(job);
    document.title = `${jobTitle(job)} — Vivify`;

    const plan = planText(job.plan, job.status);
    this.$("job-plan").textContent = plan;
    this.$("job-plan").hidden = !plan;

    const final = FINAL.has(job.status);
    const spoken = final ? jobTitle(job) : stageText({ ...job, stage_detail: "", progress: 0 }).split(" — ")[0];
    if (this.$("job-announce").textContent !== spoken) this.$("job-announce").textContent = spoken;
    this.$("job-progress").hidden = final;
    if (!final) {
      const pct = Math.round((job.progress || 0) * 100);
      const bar = this.$("job-bar");
      bar.value = pct;
      bar.textContent = `${pct}%`;
      this.$("job-stage").textContent = stageText(job);
      this.$("job-wait").textContent = waitText(job);
      this.$("cancel-form").action = `/jobs/${job.id}/cancel`;
      this.$("cancel").disabled = false;
    }

    const ok = job.status === "succeeded";
    this.$("job-result").hidden = !ok;
    if (ok) {
      const video = this.$("job-video");
      const src = job.urls.video;
      if (video.getAttribute("src") !== src) {
        video.poster = job.urls.poster;
        video.src = src;
        if (matchMedia("(prefers-reduced-motion: reduce)").matches) video.autoplay = false;
        else video.play().catch(() => {}); // autoplay muted is allowed; a refusal just leaves the poster
      }
      // The browser's own controls stay: scrubbing and fullscreen. Play/Pause below is the large, labelled one.
      video.controls = true;
      this.$("play-toggle").hidden = false;
      this.$("download").href = job.urls.download || `${src}?download=1`;
      this.$("delete-form").action = `/jobs/${job.id}/delete`;
      this.$("again-form").action = `/jobs/${job.id}/again`;
      this.offerOtherMotion(job.motion);
      this.$("job-expires").textContent = expiresText(job);
      // The clip check's line, made by the server (clip_check.summary) so the page and the CLI agree.
      const check = job.clip_check;
      const line = this.$("job-clip-check");
      line.textContent = check ? check.summary : "";
      line.hidden = !check;
      line.classList.toggle("clip-check-failed", Boolean(check && !check.passed));
      // How the clip differs from what was asked (a model that keeps its own length), in its words.
      const note = job.video && job.video.note;
      this.$("job-video-note").textContent = note || "";
      this.$("job-video-note").hidden = !note;
    }

    const bad = job.status === "failed" || job.status === "canceled";
    this.$("job-error").hidden = !bad;
    if (bad) this.fillError(jobErrorHelp(job));

    if (final) this.stop();
    if (final && previous && previous.id === job.id && !FINAL.has(previous.status)) title.focus();
    if (!previous || previous.status !== job.status || previous.progress !== job.progress) {
      this.dispatchEvent(new CustomEvent("change", { detail: job }));
    }
  }

  // "Animate again" starts on a motion other than this clip's (the page may have been rendered before it).
  offerOtherMotion(motion) {
    const radios = [...this.$("again-form").querySelectorAll("input[name=motion]")];
    const checked = radios.find((r) => r.checked);
    if (checked && checked.value !== motion) return;
    const other = radios.find((r) => r.value !== motion);
    if (other) other.checked = true;
  }

  fillError(help) {
    const msg = this.$("job-error-message");
    msg.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = help.title;
    msg.append(strong, help.message ? ` ${help.message}` : "");
    this.$("job-error-next").textContent = help.next;
  }

  showError(help) {
    this.root.hidden = false;
    this.$("job-progress").hidden = true;
    this.$("job-result").hidden = true;
    this.$("job-error").hidden = false;
    this.fillError(help);
  }

  // The same stored photo with another motion: a new job, then its own page.
  async animateAgain() {
    if (!this.job) return;
    const form = this.$("again-form");
    const chosen = new FormData(form);
    const body = new FormData();
    const text = String(chosen.get("motion_text") || "").trim();
    body.set("motion", text || String(chosen.get("motion") || ""));
    const button = this.$("again-submit");
    button.disabled = true;
    this.$("again-error").hidden = true;
    try {
      const job = await api(`/jobs/${encodeURIComponent(this.job.id)}/again`, { method: "POST", body });
      location.assign(`/jobs/${encodeURIComponent(job.id)}`);
    } catch (err) {
      button.disabled = false;
      const help = err instanceof ApiError ? errorHelp(err.code, err.message) : errorHelp("", "");
      const msg = this.$("again-error-message");
      const strong = document.createElement("strong");
      strong.textContent = help.title;
      msg.replaceChildren(strong, help.message ? ` ${help.message}` : "");
      this.$("again-error-next").textContent = help.next;
      this.$("again-error").hidden = false;
    }
  }

  async cancel() {
    if (!this.job) return;
    const button = this.$("cancel");
    button.disabled = true;
    this.$("job-stage").textContent = "Canceling…";
    try {
      const job = await api(`/jobs/${this.job.id}/cancel`, { method: "POST" });
      if (job && job.id) this.render(job);
      if (this.job && !FINAL.has(this.job.status) && !this.source) this.poll(this.job.id);
    } catch (err) {
      button.disabled = false;
      this.$("job-wait").textContent = err.message;
    }
  }

  async remove() {
    if (!this.job) return;
    const id = this.job.id;
    const button = this.$("delete");
    button.disabled = true;
    try {
      await api(`/jobs/${id}`, { method: "DELETE" });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) {
        button.disabled = false;
        this.$("job-expires").textContent = `Could not delete: ${err.message}`;
        return;
      }
    }
    const video = this.$("job-video");
    video.pause();
    video.removeAttribute("src");
    video.removeAttribute("poster");
    video.load();
    button.disabled = false;
    this.gone(id);
  }

  gone(id = this.job && this.job.id) {
    this.stop();
    this.job = null;
    this.root.hidden = true;
    this.dispatchEvent(new CustomEvent("deleted", { detail: id }));
  }
}
