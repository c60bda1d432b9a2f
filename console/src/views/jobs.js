// The jobs table: filters, keyset pages, and live rows from the tenant room.
import { api, describe } from "/console/api.js";
import { duration, el, fill, flash, when } from "/console/dom.js";
import * as live from "/console/live.js";
import {
  JOB_STATUSES,
  TERMINAL,
  applyJobEvent,
  headedTable,
  progressBar,
  statusBadge,
} from "/console/views/common.js";

const PAGE = 25;

/** Render the jobs list into `view`; returns the function that leaves it. */
export function jobsList(view) {
  const state = { filters: {}, jobs: new Map(), next: null };
  const body = el("tbody");
  const more = el("button", { type: "button", id: "more", hidden: true }, "Load more");
  const filters = filterForm((values) => {
    state.filters = values;
    state.jobs = new Map(); // nothing of the old selection is kept
    reload();
  });
  fill(
    view,
    el("h1", {}, "Jobs"),
    filters,
    headedTable(
      "jobs",
      ["Job", "Kind", "Status", "Progress", "Attempts", "Duration", "Created", ""],
      body,
    ),
    more,
  );

  async function load(cursor) {
    const query = new URLSearchParams({ ...state.filters, limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/jobs?${query}`);
    if (cursor) {
      const unseen = page.items.filter((job) => !state.jobs.has(job.id));
      unseen.forEach((job) => state.jobs.set(job.id, job));
      body.append(...unseen.map(row));
      state.next = page.next_cursor;
    } else {
      const { items, deeper } = merge(page.items);
      state.jobs = new Map(items.map((job) => [job.id, job]));
      body.replaceChildren(...items.map(row));
      if (!deeper) state.next = page.next_cursor; // else keep the cursor past the deepest row
    }
    more.hidden = !state.next;
  }

  // Reading the first page again (after a reconnect, or for a new job) races the live events
  // and keeps what the table already has: a row that heard of a later change than the page
  // keeps what it heard, a job newer than the page stays on top, and rows that "Load more"
  // brought stay below.
  function merge(fresh) {
    const ids = new Set(fresh.map((job) => job.id));
    const created = (job) => Date.parse(job.created_at);
    const others = [...state.jobs.values()].filter((job) => !ids.has(job.id) && matches(job));
    others.sort((a, b) => created(b) - created(a));
    const newest = fresh.length ? created(fresh[0]) : 0;
    const oldest = fresh.length ? created(fresh[fresh.length - 1]) : Infinity;
    const newer = others.filter((job) => created(job) > newest);
    const deeper = fresh.length === PAGE ? others.filter((job) => created(job) < oldest) : [];
    const fresher = (job) => {
      const heard = state.jobs.get(job.id);
      return heard && Date.parse(heard.updated_at) > Date.parse(job.updated_at) ? heard : job;
    };
    return { items: [...newer, ...fresh.map(fresher), ...deeper], deeper: deeper.length > 0 };
  }

  function reload() {
    load(null).catch((err) => flash(`Could not list jobs: ${describe(err)}`, "error"));
  }

  function matches(job) {
    const f = state.filters;
    return (
      (!f.status || f.status === job.status) &&
      (!f.kind || f.kind === job.kind) &&
      (!f.card_id || f.card_id === job.card_id)
    );
  }

  function onEvent(envelope) {
    if (envelope.subject.type !== "job") return;
    const job = state.jobs.get(envelope.subject.id);
    if (job) {
      redraw(applyJobEvent(job, envelope));
    } else if (envelope.seq === 1) {
      // A new job: the event lacks its kind and times, so the first page is read again
      // (once for a burst of new jobs; `merge` keeps what the rows heard meanwhile).
      reloadSoon();
    } // else a job older than the rows shown: nothing to draw
  }

  let soon = null;
  function reloadSoon() {
    if (soon) return;
    soon = setTimeout(() => {
      soon = null;
      reload();
    }, 200);
  }

  function redraw(job) {
    const old = body.querySelector(`tr[data-id="${CSS.escape(job.id)}"]`);
    if (old) old.replaceWith(row(job));
  }

  more.addEventListener("click", () =>
    load(state.next).catch((err) => flash(describe(err), "error")),
  );
  const stopTenant = live.subscribe("tenant", undefined, onEvent);
  const stopHook = live.onConnect(reload); // the tenant room does not replay what was missed
  stopTenant.ready.then(reload);
  const ticker = setInterval(() => {
    for (const job of state.jobs.values()) {
      if (job.status === "processing") {
        const cell = body.querySelector(`tr[data-id="${CSS.escape(job.id)}"] .duration`);
        if (cell) cell.textContent = duration(job.started_at, null);
      }
    }
  }, 1000);
  return () => {
    stopTenant();
    stopHook();
    clearInterval(ticker);
    clearTimeout(soon);
  };
}

function row(job) {
  const cancel = TERMINAL.has(job.status)
    ? null
    : el("button", { type: "button", class: "cancel", onclick: () => cancelJob(job.id) }, "Cancel");
  return el(
    "tr",
    { dataset: { id: job.id, status: job.status } },
    el(
      "td",
      {},
      el(
        "a",
        { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "job-link" },
        job.id.slice(0, 8),
      ),
    ),
    el("td", { class: "kind" }, job.kind),
    el("td", { class: "status-cell" }, statusBadge(job.status)),
    el("td", { class: "progress-cell" }, progressBar(job.progress)),
    el("td", { class: "attempts" }, String(job.attempts ?? 0)),
    el("td", { class: "duration" }, duration(job.started_at, job.finished_at)),
    el("td", {}, when(job.created_at)),
    el("td", {}, cancel),
  );
}

export async function cancelJob(id) {
  try {
    await api(`/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
    flash(`Cancel requested for job ${id}.`);
  } catch (err) {
    flash(`Could not cancel: ${describe(err)}`, "error");
  }
}

function filterForm(onChange) {
  const status = el(
    "select",
    { name: "status" },
    el("option", { value: "" }, "any status"),
    ...JOB_STATUSES.map((s) => el("option", { value: s }, s)),
  );
  const kind = el("input", { name: "kind", placeholder: "kind", size: 10 });
  const card = el("input", { name: "card_id", placeholder: "card id", size: 14 });
  const form = el(
    "form",
    { id: "filters", class: "filters" },
    status,
    kind,
    card,
    el("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const values = {};
    for (const input of [status, kind, card])
      if (input.value.trim()) values[input.name] = input.value.trim();
    onChange(values);
  });
  status.addEventListener("change", () => form.requestSubmit());
  return form;
}
