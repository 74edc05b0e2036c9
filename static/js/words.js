// What the page says about a job, in the browser. The words themselves come from the catalogue the server
// renders into every page (<script type="application/json" id="words">, from app/web/catalogue.py), the
// same words the no-JavaScript pages use; this file only puts them together.
const island = document.getElementById("words");
if (!island) throw new Error("the page has no #words catalogue");
export const WORDS = JSON.parse(island.textContent);

const { stages: STAGES, status: STATUS, phrases: PHRASES } = WORDS;
export const FINAL = new Set(STATUS.final);

// table[key] only for the catalogue's own entries: a code such as "constructor" must not find Object's.
const own = (table, key) => (Object.hasOwn(table, key) ? table[key] : undefined);

// "{name}" placeholders filled from `values`, as app.web.catalogue.fill does on the server.
export function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, name) => String(values[name]));
}

export function phrase(name, values = {}) {
  return fill(PHRASES[name], values);
}

// A phrase as strings and nodes for Element.append, so a value can be an element such as <strong>.
export function phraseParts(name, values) {
  return PHRASES[name]
    .split(/(\{\w+\})/)
    .filter(Boolean)
    .map((part) => {
      const match = /^\{(\w+)\}$/.exec(part);
      return match && Object.hasOwn(values, match[1]) ? values[match[1]] : part;
    });
}

export function stageText(job) {
  if (job.status === "queued") return STAGES.queued;
  if (FINAL.has(job.status)) return own(STATUS.final_stage, job.status);
  if (job.stage === "queued") return PHRASES.starting;
  const stage = own(STAGES, job.stage) || PHRASES.working;
  const percent = Math.round((job.progress || 0) * 100);
  // A step count such as "12/25" reads well after the stage; other details are for logs, not people.
  const steps = /^\d+\/\d+$/.test(job.stage_detail || "") ? job.stage_detail : "";
  return steps ? phrase("stage_steps", { stage, steps }) : phrase("stage_percent", { stage, percent });
}

function ordinalLine(n) {
  if (n === 1) return PHRASES.next_in_line;
  return phrase(n - 1 === 1 ? "one_ahead" : "many_ahead", { count: n - 1 });
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
  if (job.eta_s != null) parts.push(phrase("time_left", { duration: durationText(job.eta_s) }));
  return parts.join(" · ");
}

export function jobTitle(job) {
  if (!job) return STATUS.default_title;
  return own(STATUS.titles, job.status) || STATUS.default_title;
}

export function statusLabel(job) {
  if (job.status === "running") return fill(STATUS.running_label, { percent: Math.round((job.progress || 0) * 100) });
  return own(STATUS.labels, job.status) || job.status;
}

export function motionLabel(motion) {
  if (!motion) return PHRASES.default_motion;
  const text = motion.replace(/[-_]/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// "Planned motion: turns toward you, then smiles" for a photo check's or an unfinished job's plan; what
// the clip did once it succeeded; "" without one. app.web.rendering.plan_text says the same.
export function planText(plan, status = null) {
  const description = plan && plan.description;
  if (!description) return "";
  return phrase(status === "succeeded" ? "clip_motion" : "planned_motion", { description });
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
  if (left <= 0) return PHRASES.expiring;
  return phrase("expires", { when: clockText(job.expires_at), duration: durationText(left) });
}

// What went wrong, in plain words, and what to do next. `code` comes from the API's error body.
export function errorHelp(code, message) {
  const { title, next } = own(WORDS.errors, code) || WORDS.default_error;
  // The server's message is specific (sizes, formats); show it unless it only repeats the catalogue's
  // words (no_face's message is its title and next step).
  const detail = message && message !== title && message !== `${title} ${next}` ? message : "";
  return { title, message: detail, next };
}

export function jobErrorHelp(job) {
  if (job.status === "canceled") return errorHelp("canceled", "");
  const err = job.error || {};
  return errorHelp(err.code || "failed", err.message || "");
}
