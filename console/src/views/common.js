// Pieces shared by the views.
import { el } from "/console/dom.js";

export const JOB_STATUSES = [
  "queued",
  "processing",
  "retrying",
  "completed",
  "failed",
  "cancelled",
];
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** A status badge; its text is the status itself (tests and people read the same thing). */
export function statusBadge(status) {
  return el("span", { class: `status status-${safeClass(status)}` }, status ?? "");
}

/** A <progress> for a 0..1 fraction, with its value also in a data attribute. */
export function progressBar(fraction) {
  const value = Math.max(0, Math.min(1, Number(fraction) || 0));
  return el("progress", { max: 1, value, title: `${Math.round(value * 100)} %` });
}

/** Only letters, digits and dashes in a class name taken from data. */
export function safeClass(text) {
  return String(text ?? "").replace(/[^a-z0-9-]/gi, "");
}

/** Apply one job event's payload to a job object (status, progress, attempts, outcome). */
export function applyJobEvent(job, envelope) {
  // An event older than what the job object already shows (a page fetched since) changes nothing.
  if (Date.parse(envelope.timestamp) < Date.parse(job.updated_at)) return job;
  const p = envelope.payload || {};
  if (typeof p.status === "string") job.status = p.status;
  if (typeof p.progress === "number") job.progress = p.progress;
  if (typeof p.attempt === "number") job.attempts = Math.max(job.attempts || 0, p.attempt);
  if (p.status === "processing") {
    job.started_at = job.started_at || envelope.timestamp;
    job.finished_at = null;
  }
  if (p.status && TERMINAL.has(p.status)) job.finished_at = envelope.timestamp;
  if (p.status === "completed") job.progress = 1;
  if ("result" in p) job.result = p.result;
  if ("error" in p) job.error = p.error;
  job.updated_at = envelope.timestamp;
  return job;
}

/** A table with a header row of `headers` over `body` (a <tbody>). */
export function headedTable(id, headers, body) {
  const head = el(
    "thead",
    {},
    el(
      "tr",
      {},
      headers.map((h) => el("th", {}, h)),
    ),
  );
  return el("table", { id }, head, body);
}

/** A two-column table of [label, value] rows; each value cell carries data-field=<label>. */
export function fieldsTable(rows) {
  const tr = ([label, value]) =>
    el("tr", {}, el("th", {}, label), el("td", { dataset: { field: label.toLowerCase() } }, value));
  return el("table", { class: "fields" }, el("tbody", {}, rows.map(tr)));
}
