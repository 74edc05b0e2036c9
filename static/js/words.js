// What the page says about a job. app/web/routes/pages.py says the same for the no-JavaScript pages.
export const FINAL = new Set(["succeeded", "failed", "canceled"]);

const STAGES = {
  queued: "Waiting in line",
  analyzing: "Reading the photo",
  animating: "Animating",
  decoding: "Developing the frames",
  postprocessing: "Polishing the frames",
  encoding: "Encoding the video",
  storing: "Saving your clip",
  done: "Done",
};

export function stageText(job) {
  if (job.status === "queued") return STAGES.queued;
  if (job.status === "succeeded") return "Done";
  if (job.status === "canceled") return "Canceled";
  if (job.status === "failed") return "It did not work";
  const base = STAGES[job.stage] || "Working";
  if (job.stage === "queued") return "Starting";
  const pct = Math.round((job.progress || 0) * 100);
  // A step count such as "12/25" reads well after the stage; other details are for logs, not people.
  const steps = /^\d+\/\d+$/.test(job.stage_detail || "") ? job.stage_detail : "";
  return steps ? `${base} ${steps}` : `${base} — ${pct}%`;
}

function ordinalLine(n) {
  if (n === 1) return "Next in line";
  return `${n - 1} ${n - 1 === 1 ? "photo" : "photos"} ahead of yours`;
}

export function durationText(seconds) {
  const s = Math.max(1, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  return m < 60 ? `${m} min` : `${Math.round(m / 6) / 10} h`;
}

export function waitText(job) {
  if (FINAL.has(job.status)) return "";
  const parts = [];
  if (job.status === "queued" && job.queue_position) parts.push(ordinalLine(job.queue_position));
  if (job.eta_s != null) parts.push(`about ${durationText(job.eta_s)} left`);
  return parts.join(" · ");
}

export function jobTitle(job) {
  if (!job) return "Your animation";
  return {
    queued: "Your photo is in line",
    running: "Bringing your photo to life",
    succeeded: "Here it is",
    failed: "We could not animate this photo",
    canceled: "Canceled",
  }[job.status] || "Your animation";
}

export function statusLabel(job) {
  if (job.status === "running") return `Animating · ${Math.round((job.progress || 0) * 100)}%`;
  return { queued: "In line", succeeded: "Ready", failed: "Failed", canceled: "Canceled" }[job.status] || job.status;
}

export function motionLabel(motion) {
  if (!motion) return "Gentle life";
  const text = motion.replace(/[-_]/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// "today at 14:05", "tomorrow at 09:30", "3 Dec at 14:05", in the visitor's own time zone.
export function clockText(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const day = (offset) => {
    const d = new Date();
    d.setDate(d.getDate() + offset);
    return d.toDateString();
  };
  if (date.toDateString() === day(0)) return `today at ${time}`;
  if (date.toDateString() === day(1)) return `tomorrow at ${time}`;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })} at ${time}`;
}

export function expiresText(job) {
  if (!job.expires_at) return "";
  const left = (new Date(job.expires_at).getTime() - Date.now()) / 1000;
  const when = clockText(job.expires_at);
  return left > 0
    ? `Your photo and this clip are deleted automatically ${when} (in ${durationText(left)}).`
    : "Your photo and this clip are being deleted.";
}

// What went wrong, in plain words, and what to do next. `code` comes from the API's error body.
const HELP = {
  unsupported_type: ["That file is not a photo we can use.", "Most phone and camera photos are JPEG; a screenshot of the photo works too."],
  unsupported_media_type: ["That file is not a photo we can use.", "Most phone and camera photos are JPEG; a screenshot of the photo works too."],
  unreadable_image: ["We could not read that photo.", "It may be damaged or incomplete: save it again, or choose another photo."],
  empty_file: ["That file is empty.", "Choose the photo again; if it was still downloading, wait until it has finished."],
  too_large: ["That photo is too large.", "Choose a smaller copy — a phone photo or a scan of a print is fine."],
  too_many_pixels: ["That photo has too many pixels.", "Choose a smaller copy — a phone photo or a scan of a print is fine."],
  photo_too_small: ["That photo is too small.", "Choose a larger copy: 512 pixels or more on each side looks best."],
  no_face: ["We could not find a face.", "Try a photo where the face is larger, well lit and looking towards the camera."],
  face_too_small: ["The face is too small in this photo.", "Crop the photo around the face, or choose one taken closer."],
  consent_required: ["Please confirm you have the right to animate this photo.", "Tick the box above the button, then try again."],
  quota_exceeded: ["You have used today's free animations.", "Come back tomorrow to animate more photos."],
  over_quota: ["You have used today's free animations.", "Come back tomorrow to animate more photos."],
  rate_limited: ["Too many requests in a short time.", "Wait a few seconds, then try again."],
  offline: ["We could not reach Vivify.", "Check your connection and try again."],
  canceled: ["You canceled this animation.", "Choose a photo and a motion to start again whenever you like."],
  timeout: ["This animation took too long and was stopped.", "Try again; a smaller photo is quicker."],
  storage_unavailable: ["Our storage is busy right now.", "Try again in a minute."],
  photo_gone: ["The photo of this animation is no longer stored.", "Upload the photo again to animate it with another motion."],
  invalid_seed: ["That seed is not a number we can use.", "Leave it empty, or use a whole number."],
};

export function errorHelp(code, message) {
  const [title, next] = HELP[code] || [
    "Something went wrong on our side.",
    "Try again in a minute; if it keeps failing, try another photo.",
  ];
  // The server's message is specific (sizes, formats); show it unless it only repeats the title.
  const detail = message && message !== title ? message : "";
  return { title, message: detail, next };
}

export function jobErrorHelp(job) {
  if (job.status === "canceled") return errorHelp("canceled", "");
  const err = job.error || {};
  return errorHelp(err.code || "failed", err.message || "");
}
