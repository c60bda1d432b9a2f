// The console's entry: sign-in, the connection to the relay, and a hash router over the views.
import { api, describe, session } from "/console/api.js";
import { el, fill, flash } from "/console/dom.js";
import * as live from "/console/live.js";
import { agentPage, agentsList } from "/console/views/agents.js";
import { jobPage } from "/console/views/job.js";
import { jobsList } from "/console/views/jobs.js";
import { schedulingPage } from "/console/views/scheduling.js";
import { submitForm } from "/console/views/submit.js";

const view = document.getElementById("view");
let leaveView = () => {};
let config = null;

const routes = [
  [/^#\/jobs\/([^/]+)$/, (id) => jobPage(view, id)],
  [/^#\/jobs$/, () => jobsList(view)],
  [/^#\/submit$/, () => submitForm(view)],
  [/^#\/agents\/([^/]+)$/, (id) => agentPage(view, id)],
  [/^#\/agents$/, () => agentsList(view)],
  [/^#\/scheduling$/, () => schedulingPage(view)],
];

function route() {
  leaveView();
  leaveView = () => {};
  if (!session.key) return signIn();
  const hash = location.hash || "#/jobs";
  for (const [pattern, render] of routes) {
    const match = hash.match(pattern);
    if (match) {
      leaveView = render(...match.slice(1).map(decodeURIComponent)) || (() => {});
      return;
    }
  }
  location.hash = "#/jobs";
}

function signIn(message) {
  showSignedIn(false);
  const input = el("input", {
    type: "password",
    id: "key",
    name: "key",
    autocomplete: "off",
    required: true,
    size: 60,
  });
  const form = el(
    "form",
    { id: "signin", class: "card" },
    el("h1", {}, "Sign in"),
    el("label", { for: "key" }, "API key"),
    input,
    el("button", { type: "submit" }, "Sign in"),
    el("p", { class: "hint" }, "`make run` prints the key of tenant 'demo' (also in .demo-key)."),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    session.key = input.value.trim();
    try {
      await api("/jobs?limit=1"); // proves the key before anything else
    } catch (err) {
      session.key = null;
      flash(`Sign-in failed: ${describe(err)}`, "error");
      return;
    }
    flash("");
    start();
  });
  fill(view, form);
  if (message) flash(message, "error");
}

function showSignedIn(on) {
  document.getElementById("nav").hidden = !on;
  document.getElementById("signout").hidden = !on;
}

async function start() {
  showSignedIn(true);
  try {
    config = config || (await (await fetch("/console/config.json")).json());
    live.connect(config.relay_url, session.key);
  } catch (err) {
    flash(`No live updates: the relay's address could not be read (${err.message}).`, "error");
  }
  route();
}

function signOut(message) {
  leaveView();
  leaveView = () => {};
  live.disconnect();
  session.key = null;
  signIn(message);
}

window.addEventListener("hashchange", () => session.key && route());
window.addEventListener("orchestra:unauthorized", () =>
  signOut("The key was refused: sign in again."),
);
document.getElementById("signout").addEventListener("click", () => signOut());
if (session.key) start();
else signIn();
