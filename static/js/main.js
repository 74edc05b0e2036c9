// Wires the page together. Without this file the page still works: plain form posts and a job page
// that refreshes itself.
import { History } from "./history.js";
import { JobView } from "./job.js";
import { ShareView, autoplay } from "./share.js";
import { UploadForm } from "./upload.js";
import { phrase } from "./words.js";

document.documentElement.classList.add("js");

const start = document.getElementById("start");
const jobRoot = document.getElementById("job");
const historyRoot = document.getElementById("history");

const history = historyRoot ? new History(historyRoot) : null;
const view = jobRoot ? new JobView(jobRoot) : null;
const upload = start ? new UploadForm(start) : null;

if (history) history.refresh();
if (upload) upload.refreshQuota();
// The live view, for tests and the benchmark (tests/browser/test_live.py, bench/live_view.py): the page's
// own object, which can do nothing the visitor's pointer and sliders cannot.
if (upload && upload.live) window.vivifyLive = upload.live;

// A clip deleted from "My animations" while it is shown: the view goes as from its own Delete button.
if (history && view) {
  history.addEventListener("deleted", (e) => {
    if (view.job && view.job.id === e.detail) view.gone(e.detail);
  });
}

autoplay(document.getElementById("shared-video")); // the page behind a share link
const shareRoot = document.getElementById("job-result");
const share = shareRoot && document.getElementById("share-box") ? new ShareView(shareRoot) : null;
if (share && view && view.job) share.update(view.job);

if (view) {
  view.addEventListener("change", (e) => history && history.upsert(e.detail));
  view.addEventListener("change", (e) => share && share.update(e.detail));
  view.addEventListener("deleted", (e) => {
    if (history) history.remove(e.detail);
    if (upload) {
      start.hidden = false;
      if (location.pathname !== "/") window.history.pushState({}, "", "/");
      upload.showNotice({ title: phrase("deleted_title"), message: phrase("deleted_message"), next: "" });
    } else {
      location.assign("/?deleted=1");
    }
  });
  view.addEventListener("again", (e) => {
    if (upload && upload.file) {
      e.preventDefault(); // handled here: keep the photo, show the form
      view.stop();
      jobRoot.hidden = true;
      window.history.pushState({}, "", "/");
      upload.again();
    }
  });
  // A server-rendered job page: follow the job it shows.
  if (jobRoot.dataset.jobId) view.followId(jobRoot.dataset.jobId);
}

if (upload && view) {
  upload.addEventListener("created", (e) => {
    const { job, thumb } = e.detail;
    start.hidden = true;
    if (upload.live) upload.live.stop(); // no frames for a hidden view; again() resumes it
    view.follow(job, { thumb });
    if (history) history.upsert(job);
    window.history.pushState({ job: job.id }, "", `/jobs/${job.id}`);
    document.getElementById("job-title").focus();
  });
  window.addEventListener("popstate", () => {
    // Back from /jobs/<id> to the form (the photo is still chosen); forward again to the job.
    const match = location.pathname.match(/^\/jobs\/([^/]+)$/);
    if (match) {
      start.hidden = true;
      view.followId(match[1]);
    } else {
      view.stop();
      jobRoot.hidden = true;
      start.hidden = false;
    }
  });
}
