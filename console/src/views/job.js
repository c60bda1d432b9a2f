// One job: its fields, live status and progress, its streamed output, its event timeline and
// its result.
import { api, describe, fetchBlob } from "/console/api.js";
import { duration, el, fill, flash, jsonBlock, when } from "/console/dom.js";
import * as live from "/console/live.js";
import {
  TERMINAL,
  applyJobEvent,
  fieldsTable,
  headedTable,
  progressBar,
  statusBadge,
} from "/console/views/common.js";
import { cancelJob } from "/console/views/jobs.js";
import { codePoints, outputPanel } from "/console/views/output.js";

const WAITING_RELOAD_TICKS = 3; // seconds between reads of a waiting job
const OUTPUT = "job.output.appended";

/** Render job `id` into `view`; returns the function that leaves it. */
export function jobPage(view, id) {
  let left = false;
  let stop = () => {};
  let blobUrl = null;
  const path = `/jobs/${encodeURIComponent(id)}`;
  const summary = el("div", { id: "job-summary" });
  const timeline = el("tbody");
  const result = el("div", { id: "job-result" });
  const output = outputPanel((offset, deltaOffset) =>
    api(`${path}/output?offset=${offset}&delta_offset=${deltaOffset}`),
  );
  fill(
    view,
    el("h1", {}, "Job ", el("code", {}, id)),
    summary,
    el("h2", {}, "Output"),
    output.node,
    el("h2", {}, "Result"),
    result,
    el("h2", {}, "Events"),
    headedTable("timeline", ["seq", "time", "type", "details"], timeline),
  );

  let job = null;
  async function start() {
    // Events first, then the job and its output: they are then at least as new as the last
    // event listed, and the room replays from that event on (what they already show is
    // skipped: the output panel places each chunk by its offset).
    const events = (await api(`${path}/events`)).items;
    job = await api(path);
    await output.load();
    if (left) return;
    drawSummary(summary, job, actions);
    events.forEach(addToTimeline);
    const last = events.length ? events[events.length - 1].seq : 0;
    stop = live.subscribe(`job:${job.id}`, last, onEvent);
    if (TERMINAL.has(job.status)) showResult();
  }

  async function onEvent(envelope) {
    addToTimeline(envelope);
    if (envelope.event_type === OUTPUT) {
      output.chunk(envelope.payload);
      return; // the job's fields do not change with its output
    }
    applyJobEvent(job, envelope);
    // Chunks come before their attempt's outcome; should a read of a gap have failed, the
    // end is read once more (from what is shown on: nothing shown twice).
    if (envelope.payload.status && TERMINAL.has(envelope.payload.status)) output.load();
    // A new status changes why the job waits (or that it does): read the job again.
    if (envelope.payload.status) await reload();
    if (envelope.payload.status && TERMINAL.has(envelope.payload.status)) showResult();
    if (!left) drawSummary(summary, job, actions);
  }

  /** One row per event, but a run of output chunks of one attempt shares a row. */
  function addToTimeline(env) {
    const lastRow = timeline.lastElementChild;
    if (
      env.event_type === OUTPUT &&
      lastRow?.outputRun &&
      lastRow.outputRun.attempt === env.payload?.attempt
    ) {
      updateOutputRow(lastRow, env);
    } else {
      timeline.append(env.event_type === OUTPUT ? outputRow(env) : eventRow(env));
    }
  }

  async function reload() {
    try {
      job = await api(path);
    } catch {
      /* keep the events' view */
    }
  }

  async function showResult() {
    const parts = [];
    if (job.error)
      parts.push(el("p", { class: "error" }, `${job.error.code}: ${job.error.message}`));
    if (job.result !== null && job.result !== undefined) parts.push(jsonBlock(job.result));
    if (job.result_url) parts.push(el("p", {}, "result_url: ", el("code", {}, job.result_url)));
    try {
      const artifact = await fetchBlob(`${path}/result`);
      if (artifact && artifact.type.startsWith("image/")) {
        // An <img> runs no script, even for SVG; a blob URL keeps the key out of the address.
        if (blobUrl) URL.revokeObjectURL(blobUrl);
        blobUrl = URL.createObjectURL(artifact.blob);
        parts.push(el("img", { id: "result-image", src: blobUrl, alt: `result of job ${id}` }));
      } else if (artifact) {
        parts.push(
          el("p", { class: "hint" }, `artifact: ${artifact.type}, ${artifact.blob.size} bytes`),
        );
      }
    } catch (err) {
      parts.push(el("p", { class: "error" }, `artifact: ${describe(err)}`));
    }
    if (!left) fill(result, parts.length ? parts : el("p", { class: "hint" }, "no result"));
  }

  const actions = {
    cancel: async () => {
      await cancelJob(id);
    },
    retry: async () => {
      try {
        job = await api(`${path}/retry`, { method: "POST" });
        fill(result);
        drawSummary(summary, job, actions);
      } catch (err) {
        flash(`Could not retry: ${describe(err)}`, "error");
      }
    },
  };

  start().catch((err) => flash(`Could not load job: ${describe(err)}`, "error"));
  // A running job's duration ticks; a waiting job's reason can change without an event of
  // its own (another job ends, a limit or a pause changes), so it is read again now and then.
  let ticks = 0;
  const ticker = setInterval(async () => {
    ticks += 1;
    if (job && job.waiting_reason && ticks % WAITING_RELOAD_TICKS === 0) await reload();
    if (!left && job && (job.status === "processing" || job.waiting_reason))
      drawSummary(summary, job, actions);
  }, 1000);
  return () => {
    left = true;
    stop();
    clearInterval(ticker);
    if (blobUrl) URL.revokeObjectURL(blobUrl);
  };
}

function drawSummary(node, job, actions) {
  const rows = [
    ["Status", statusBadge(job.status)],
    [
      "Progress",
      el("span", {}, progressBar(job.progress), ` ${Math.round((job.progress || 0) * 100)} %`),
    ],
    ...(job.waiting_reason ? [["Waiting", waitingReason(job.waiting_reason)]] : []),
    ["Kind", job.kind],
    ["Concurrency key", job.concurrency_key ?? ""],
    ["Attempts", `${job.attempts} (max retries ${job.max_retries})`],
    ["Duration", duration(job.started_at, job.finished_at)],
    ["Created", when(job.created_at)],
    ["Card", job.card_id ?? ""],
    ["Correlation id", job.correlation_id ?? ""],
    ["Params", jsonBlock(job.params)],
  ];
  const buttons = [];
  if (!TERMINAL.has(job.status))
    buttons.push(el("button", { type: "button", id: "cancel", onclick: actions.cancel }, "Cancel"));
  if (job.status === "failed" || job.status === "cancelled")
    buttons.push(el("button", { type: "button", id: "retry", onclick: actions.retry }, "Retry"));
  fill(node, fieldsTable(rows), el("p", {}, ...buttons));
}

/** Why a queued job has not started: the reason's message, its code beside it. */
function waitingReason(reason) {
  return el(
    "span",
    { id: "waiting-reason", dataset: { code: reason.code } },
    reason.message,
    " ",
    el("code", {}, reason.code),
  );
}

/** A row for a run of `job.output.appended` events of one attempt (seq `first`–`last`). */
function outputRow(env) {
  const row = el("tr", { class: "output-run", dataset: { seq: env.seq } });
  row.outputRun = { attempt: env.payload?.attempt, count: 0, chars: 0, deltas: 0 };
  return updateOutputRow(row, env);
}

function updateOutputRow(row, env) {
  const run = row.outputRun;
  const p = env.payload || {};
  run.count += 1;
  run.chars += codePoints(p.text || "");
  run.deltas += Array.isArray(p.deltas) ? p.deltas.length : 0;
  row.dataset.lastSeq = String(env.seq);
  const first = row.dataset.seq;
  const deltas = run.deltas ? `, ${run.deltas} deltas` : "";
  fill(
    row,
    el("td", {}, run.count > 1 ? `${first}–${env.seq}` : first),
    el("td", {}, when(env.timestamp)),
    el("td", {}, env.event_type, run.count > 1 ? ` ×${run.count}` : ""),
    el("td", {}, `attempt ${run.attempt}: ${run.chars} characters${deltas}`),
  );
  return row;
}

function eventRow(env) {
  const p = env.payload || {};
  let details = "";
  if (p.status) details = `${p.previous_status ?? "—"} → ${p.status}`;
  else if (typeof p.progress === "number")
    details = `${Math.round(p.progress * 100)} %${p.message ? ` ${p.message}` : ""}`;
  if (p.error) details += ` (${p.error.code}: ${p.error.message})`;
  if (!details) details = JSON.stringify(p).slice(0, 300);
  return el(
    "tr",
    { dataset: { seq: env.seq } },
    el("td", {}, String(env.seq)),
    el("td", {}, when(env.timestamp)),
    el("td", {}, env.event_type),
    el("td", {}, details),
  );
}
