// The tenant's share of the workers: its limits, the slots it holds, what waits, and the
// pauses holding its work back; with an admin key, pause and resume a kind or all its work.
import { api, describe } from "/console/api.js";
import { el, fill, flash, when } from "/console/dom.js";
import { fieldsTable, headedTable } from "/console/views/common.js";

const REFRESH_MS = 3000;
const ALL = ""; // the select's value for "all this tenant's work"

/** Render the scheduling page into `view`; returns the function that leaves it. */
export function schedulingPage(view) {
  let left = false;
  const summary = el("div", { id: "scheduling-summary" });
  const pauses = el("tbody");
  const kind = el(
    "select",
    { id: "pause-kind", name: "kind" },
    el("option", { value: ALL }, "all work"),
  );
  const button = (id, label, resume) =>
    el("button", { type: "button", id, onclick: () => change(kind.value, resume) }, label);
  fill(
    view,
    el("h1", {}, "Scheduling"),
    summary,
    el("h2", {}, "Pauses"),
    headedTable("pauses", ["tenant", "kind", "since", ""], pauses),
    el(
      "p",
      { class: "controls" },
      el("label", { for: "pause-kind" }, "Kind "),
      kind,
      " ",
      button("pause", "Pause", false),
      " ",
      button("resume", "Resume", true),
    ),
    el(
      "p",
      { class: "hint" },
      "Paused jobs stay queued; running ones go on. Pausing and resuming take a key with the admin scope.",
    ),
  );

  async function draw() {
    const state = await api("/scheduling");
    if (left) return;
    const { limits } = state;
    const own = new Set(limits.own);
    const limit = (name) => `${limits[name]}${own.has(name) ? " (this tenant's own)" : ""}`;
    fill(
      summary,
      fieldsTable([
        ["Holding a slot", `${state.running} of ${limits.max_running}`],
        ["Waiting for a slot", String(state.waiting)],
        ["Weight", limit("weight")],
        ["Max running", limit("max_running")],
        ["Max priority", limit("max_priority")],
        ["Key limit", limit("key_limit")],
      ]),
    );
    fill(pauses, state.pauses.map(pauseRow));
  }

  function pauseRow(p) {
    // Only this tenant's own pauses can be lifted here; the operator's hold every tenant.
    const lift = p.tenant
      ? el(
          "button",
          { type: "button", class: "resume", onclick: () => change(p.kind ?? ALL, true) },
          "Resume",
        )
      : el("span", { class: "hint" }, "set by the operator");
    return el(
      "tr",
      { dataset: { kind: p.kind ?? "" } },
      el("td", {}, p.tenant ?? "every tenant"),
      el("td", {}, p.kind ?? "all"),
      el("td", {}, when(p.since)),
      el("td", {}, lift),
    );
  }

  async function change(value, resume) {
    const body = value === ALL ? {} : { kind: value };
    try {
      const answer = await api(resume ? "/pauses/resume" : "/pauses", { method: "POST", body });
      const what = answer.kind ?? "all work";
      flash(
        `${what}: ${answer.paused ? "paused" : "resumed"}${answer.changed ? "" : " (already)"}`,
      );
      await draw();
    } catch (err) {
      flash(`Could not ${resume ? "resume" : "pause"}: ${describe(err)}`, "error");
    }
  }

  api("/generators")
    .then((answer) => {
      if (!left) kind.append(...answer.items.map((g) => el("option", { value: g.kind }, g.kind)));
    })
    .catch((err) => flash(`Could not load generators: ${describe(err)}`, "error"));
  draw().catch((err) => flash(`Could not load scheduling: ${describe(err)}`, "error"));
  const ticker = setInterval(() => draw().catch(() => {}), REFRESH_MS);
  return () => {
    left = true;
    clearInterval(ticker);
  };
}
