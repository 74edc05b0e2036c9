// Under a finished clip: the GIF link, the before/after view and the share link (private until the
// visitor makes one; "Stop sharing" revokes it for everyone who has it).
import { api } from "./api.js";

const reducedMotion = () => matchMedia("(prefers-reduced-motion: reduce)").matches;

// A looping clip starts by itself unless the visitor asked for reduced motion (it has controls either way).
export function autoplay(video) {
  if (video && !reducedMotion()) video.play().catch(() => {});
}

export class ShareView {
  constructor(root) {
    this.root = root;
    this.$ = (id) => root.querySelector(`#${id}`);
    this.job = null;
    this.$("share-make").addEventListener("click", () => this.make());
    this.$("share-revoke").addEventListener("click", () => this.revoke());
    this.$("share-copy").addEventListener("click", () => this.copy());
    // Before and after play together when opened.
    this.$("before-after").addEventListener("toggle", (e) => e.target.open && autoplay(this.$("after-clip")));
  }

  // The job as the page shows it now (job.js's "change" events).
  update(job) {
    const done = Boolean(job && job.status === "succeeded");
    this.job = job;
    const gif = this.$("download-gif");
    gif.hidden = !(done && job.urls.gif);
    if (done && job.urls.gif) gif.href = job.urls.gif;
    if (done && this.shownFor !== job.id) {
      this.shownFor = job.id; // once per finished job: a later event must not restart the clips
      this.$("before-photo").src = job.urls.photo;
      const after = this.$("after-clip");
      after.poster = job.urls.poster;
      after.src = job.urls.video;
      this.showLink(null, job.shared);
    }
    this.$("share-box").hidden = !done;
  }

  showLink(url, shared = Boolean(url)) {
    this.$("share-link-row").hidden = !url;
    this.$("share-url").value = url || "";
    this.$("share-copy").hidden = !url;
    this.$("share-revoke").hidden = !shared;
    this.$("share-make").textContent = shared ? "Show the share link" : "Make a share link";
    this.$("share-make").hidden = Boolean(url);
    this.$("share-state").textContent = shared
      ? "Shared: anyone with the link can watch this clip (not your photo) until it expires."
      : "Private: only you can see this clip.";
  }

  say(message) {
    const el = this.$("share-error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  async make() {
    this.say("");
    try {
      const { url } = await api(`/jobs/${this.job.id}/share`, { method: "POST" });
      this.showLink(url);
      this.$("share-url").select();
    } catch (err) {
      this.say(err.message);
    }
  }

  async revoke() {
    this.say("");
    try {
      await api(`/jobs/${this.job.id}/share`, { method: "DELETE" });
      this.showLink(null, false);
    } catch (err) {
      this.say(err.message);
    }
  }

  async copy() {
    const url = this.$("share-url").value;
    try {
      await navigator.clipboard.writeText(url);
      this.say("Link copied.");
    } catch {
      this.$("share-url").select(); // the visitor copies it by hand
    }
  }
}
