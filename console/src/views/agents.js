// The agents list and one agent's page: status, heartbeat, commands and logs, live.
import { api, describe } from "/console/api.js";
import { el, fill, flash, jsonBlock, when } from "/console/dom.js";
import * as live from "/console/live.js";
import { fieldsTable, headedTable, statusBadge } from "/console/views/common.js";

/** Render the agents list into `view`; returns the function that leaves it. */
export function agentsList(view) {
  const body = el("tbody");
  const empty = el(
    "p",
    { class: "hint", hidden: true },
    "No agents yet: create one with POST /api/v1/agents.",
  );
  fill(
    view,
    el("h1", {}, "Agents"),
    empty,
    headedTable("agents", ["Name", "Type", "Status", "Heartbeat", "Version"], body),
  );
  async function load() {
    const page = await api("/agents?limit=100");
    empty.hidden = page.items.length > 0;
    body.replaceChildren(
      ...page.items.map((a) =>
        el(
          "tr",
          { dataset: { id: a.id } },
          el("td", {}, el("a", { href: `#/agents/${encodeURIComponent(a.id)}` }, a.name)),
          el("td", {}, a.type),
          el("td", { class: "status-cell" }, statusBadge(a.status)),
          el("td", {}, when(a.last_heartbeat)),
          el("td", {}, String(a.version)),
        ),
      ),
    );
  }
  const reload = () =>
    load().catch((err) => flash(`Could not list agents: ${describe(err)}`, "error"));
  // Agent events are few: redraw the list from the API on any of them.
  const stop = live.subscribe("tenant", undefined, (env) => {
    if (env.subject.type === "agent") reload();
  });
  const stopHook = live.onConnect(reload);
  stop.ready.then(reload);
  return () => {
    stop();
    stopHook();
  };
}

/** Render agent `id` into `view`; returns the function that leaves it. */
export function agentPage(view, id) {
  let left = false;
  let stop = () => {};
  let pending = null;
  const path = `/agents/${encodeURIComponent(id)}`;
  const summary = el("div", { id: "agent-summary" });
  const commands = el("tbody");
  const logs = el("pre", { id: "agent-logs", class: "logs" });
  fill(
    view,
    el("h1", {}, "Agent"),
    summary,
    el(
      "p",
      {},
      ...["start", "stop", "restart", "status"].map((c) =>
        el("button", { type: "button", id: `agent-${c}`, onclick: () => command(c) }, c),
      ),
    ),
    el("h2", {}, "Commands"),
    headedTable(
      "commands",
      ["Command", "Status", "Created", "Finished", "Result / error"],
      commands,
    ),
    el("h2", {}, "Logs"),
    logs,
  );

  async function load() {
    const [agent, cmds, lines] = await Promise.all([
      api(path),
      api(`${path}/commands?limit=20`),
      api(`${path}/logs?limit=200`),
    ]);
    if (left) return;
    drawSummary(summary, agent);
    commands.replaceChildren(...cmds.items.map(commandRow));
    logs.textContent = lines.items.map(logLine).join("\n") || "(no log lines)";
  }
  // Events can come in bursts (a command's start, its outcome, a status change): load once per burst.
  function refresh() {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      load().catch((err) => flash(describe(err), "error"));
    }, 150);
  }
  async function command(name) {
    try {
      await api(`${path}/commands`, { method: "POST", body: { command: name } });
      flash(`${name} accepted.`);
    } catch (err) {
      flash(`Could not send ${name}: ${describe(err)}`, "error");
    }
  }

  // The last seq first, then the agent: any event after that seq reloads the page again.
  api(`${path}/events`)
    .then(async ({ items }) => {
      const last = items.length ? items[items.length - 1].seq : 0;
      await load();
      if (!left) stop = live.subscribe(`agent:${id}`, last, refresh);
    })
    .catch((err) => flash(`Could not load agent: ${describe(err)}`, "error"));
  return () => {
    left = true;
    stop();
    clearTimeout(pending);
  };
}

function drawSummary(node, agent) {
  const rows = [
    ["Name", agent.name],
    ["Type", agent.type],
    ["Status", statusBadge(agent.status)],
    ["Heartbeat", when(agent.last_heartbeat) || "never"],
    ["Version", String(agent.version)],
    [
      "Capabilities",
      (agent.capabilities || []).map((c) => (typeof c === "string" ? c : c.name)).join(", "),
    ],
    ["Description", agent.description ?? ""],
    ["Config", jsonBlock(agent.config)],
  ];
  fill(node, fieldsTable(rows));
}

function commandRow(cmd) {
  const outcome = cmd.error
    ? `${cmd.error.code}: ${cmd.error.message}`
    : JSON.stringify(cmd.result ?? null).slice(0, 300);
  return el(
    "tr",
    { dataset: { id: cmd.id } },
    el("td", {}, cmd.command),
    el("td", {}, statusBadge(cmd.status)),
    el("td", {}, when(cmd.created_at)),
    el("td", {}, when(cmd.finished_at)),
    el("td", {}, outcome),
  );
}

function logLine(line) {
  if (typeof line === "string") return line;
  const at = line.at || line.timestamp || line.created_at || "";
  return `${at} ${line.level ?? ""} ${line.message ?? JSON.stringify(line)}`.trim();
}
