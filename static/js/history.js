// "My animations": this visitor's recent jobs, kept current as jobs change on this page.
import { api, ApiError } from "./api.js";
import { FINAL, clockText, motionLabel, phrase, statusLabel } from "./words.js";

export class History extends EventTarget {
  constructor(root) {
    super();
    this.root = root;
    this.list = root.querySelector("#history-list");
    this.empty = root.querySelector("#history-empty");
    this.jobs = new Map();
    this.timer = null;
    for (const time of root.querySelectorAll("time[datetime]")) time.textContent = clockText(time.dateTime);
    // Delete asks first: it cannot be undone. Without JavaScript the form posts (and the page reloads).
    this.list.addEventListener("submit", (e) => {
      const item = e.target.closest(".history-item");
      if (!item || !e.target.classList.contains("history-delete")) return;
      e.preventDefault();
      if (window.confirm(phrase("delete_confirm"))) this.delete(item.dataset.jobId, e.target);
    });
  }

  async delete(id, form) {
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await api(`/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) {
        button.disabled = false;
        button.textContent = phrase("delete_failed");
        return;
      }
    }
    this.remove(id);
    this.dispatchEvent(new CustomEvent("deleted", { detail: id }));
  }

  async refresh() {
    try {
      const data = await api("/jobs");
      const jobs = Array.isArray(data) ? data : data.jobs || [];
      this.jobs = new Map(jobs.map((job) => [job.id, job]));
      this.draw();
      // Jobs still working elsewhere (another tab) are refreshed now and then, not streamed.
      clearTimeout(this.timer);
      if (jobs.some((job) => !FINAL.has(job.status))) this.timer = setTimeout(() => this.refresh(), 5000);
    } catch {
      /* the server-rendered list stays */
    }
  }

  upsert(job) {
    this.jobs.set(job.id, job);
    this.draw();
  }

  remove(id) {
    this.jobs.delete(id);
    this.draw();
  }

  draw() {
    const jobs = [...this.jobs.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    this.list.replaceChildren(...jobs.map((job) => this.item(job)));
    this.empty.hidden = jobs.length > 0;
  }

  item(job) {
    const li = document.createElement("li");
    li.className = "history-item";
    li.dataset.jobId = job.id;
    li.dataset.status = job.status;
    const link = document.createElement("a");
    link.className = "history-link";
    link.href = `/jobs/${job.id}`;
    let thumb;
    if (job.status === "succeeded" && job.urls && job.urls.poster) {
      thumb = document.createElement("img");
      thumb.src = job.urls.poster;
      thumb.alt = "";
      thumb.width = 64;
      thumb.height = 64;
      thumb.loading = "lazy";
    } else {
      thumb = document.createElement("span");
      thumb.className = "history-thumb-empty";
      thumb.setAttribute("aria-hidden", "true");
    }
    thumb.classList.add("history-thumb");
    const text = document.createElement("span");
    text.className = "history-text";
    const motion = document.createElement("span");
    motion.className = "history-motion";
    motion.textContent = motionLabel(job.motion);
    const status = document.createElement("span");
    status.className = `status status-${job.status}`;
    status.textContent = statusLabel(job);
    const time = document.createElement("time");
    time.className = "history-time";
    time.dateTime = job.created_at;
    time.textContent = clockText(job.created_at);
    text.append(motion, status, time);
    link.append(thumb, text);
    li.append(link, this.actions(job));
    return li;
  }

  // Download (a finished clip) and Delete, as the server renders them in templates/_history.html.
  actions(job) {
    const actions = document.createElement("span");
    actions.className = "history-actions";
    const what = `${motionLabel(job.motion)}, ${clockText(job.created_at)}`;
    if (job.status === "succeeded" && job.urls && job.urls.video) {
      const download = document.createElement("a");
      download.className = "button button-small history-download";
      download.href = `${job.urls.video}?download=1`;
      download.download = "vivify.mp4";
      download.textContent = "Download";
      download.setAttribute("aria-label", `Download the clip (${what})`);
      actions.append(download);
    }
    const form = document.createElement("form");
    form.className = "inline-form history-delete";
    form.method = "post";
    form.action = `/jobs/${job.id}/delete`;
    const button = document.createElement("button");
    button.className = "button button-small button-danger";
    button.type = "submit";
    button.textContent = "Delete";
    button.setAttribute("aria-label", `Delete (${what})`);
    form.append(button);
    actions.append(form);
    return actions;
  }
}
