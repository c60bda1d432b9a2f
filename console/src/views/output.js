// A job's streamed output on its page: the latest attempt's text (and JSON deltas) as it
// arrives, each character once, whatever order the page heard of it in.
//
// The panel knows one attempt and how much of it it shows: `chars` characters of text and
// `deltas` deltas. A `job.output.appended` chunk says where its text starts (`offset`, in the
// attempt's characters) and where its deltas start (`delta_offset`), so each chunk is placed,
// never merely appended: what is already shown is skipped (a replay after a reload or a
// reconnect), a chunk that starts beyond what is shown (a gap) makes the panel read the rest
// from the API (`GET .../output` from what it shows), and a chunk of a newer attempt clears the
// panel, which then shows that attempt only, marked as such. An older attempt's chunk is dropped.
// Chunks and reads are applied one after the other, in the order they came.
//
// Offsets count characters as the server does (code points, Python's `len`), not JavaScript's
// UTF-16 units, so text beyond the Basic Multilingual Plane is placed right too.
import { el, fill } from "/console/dom.js";

const DELTA_LIMIT = 2000; // characters of one delta's JSON shown

/** The number of code points of `text`. */
export function codePoints(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

/** `text` from its code point `start` on. */
function fromCodePoint(text, start) {
  if (start <= 0) return text;
  let i = 0;
  let n = 0;
  for (const ch of text) {
    if (n === start) break;
    i += ch.length;
    n += 1;
  }
  return text.slice(i);
}

/**
 * The Output panel. `read(offset, deltaOffset)` answers `GET .../output` from there on (its JSON:
 * `{attempt, offset, text, delta_offset, deltas}`). Returns `{node, load(), chunk(payload),
 * state()}`: `load()` reads the output so far, `chunk()` places a `job.output.appended`
 * payload; both return a promise that resolves once it is applied (and every earlier one).
 */
export function outputPanel(read) {
  const label = el("p", { id: "job-output-attempt", class: "hint" }, "no attempt yet");
  const text = el("pre", { id: "job-output", class: "output", dataset: { attempt: "0" } });
  const deltaList = el("ol", { id: "job-output-deltas", class: "output", hidden: true });
  const node = el("div", { id: "job-output-panel" }, label, text, deltaList);
  const shown = { attempt: 0, chars: 0, deltas: 0 };
  let queue = Promise.resolve();

  /** Run `step` after every earlier one (a failed step does not stop those after it). */
  function serial(step) {
    queue = queue.then(step).catch((err) => {
      console.warn("output panel:", err);
    });
    return queue;
  }

  function startAttempt(attempt) {
    shown.attempt = attempt;
    shown.chars = 0;
    shown.deltas = 0;
    fill(text);
    fill(deltaList);
    deltaList.hidden = true;
    text.dataset.attempt = String(attempt);
    fill(label, attempt > 0 ? `attempt ${attempt}` : "no attempt yet");
    label.dataset.attempt = String(attempt);
  }

  /** Keep a box scrolled to its end while it grows, unless the user scrolled up in it. */
  function growing(box, grow) {
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    grow();
    if (atEnd) box.scrollTop = box.scrollHeight;
  }

  function appendText(more) {
    if (!more) return;
    growing(text, () => {
      const last = text.lastChild;
      if (last instanceof Text) last.appendData(more);
      else text.append(document.createTextNode(more));
    });
    shown.chars += codePoints(more);
    text.dataset.chars = String(shown.chars);
  }

  function appendDeltas(values) {
    if (!values.length) return;
    growing(deltaList, () => {
      for (const value of values) {
        let json = JSON.stringify(value) ?? "null";
        if (json.length > DELTA_LIMIT) json = `${json.slice(0, DELTA_LIMIT)}…`;
        deltaList.append(el("li", {}, el("code", {}, json)));
      }
    });
    deltaList.hidden = false;
    shown.deltas += values.length;
  }

  /** Read what the API has beyond what is shown; a newer attempt replaces the shown one. */
  async function catchUp() {
    for (let tries = 0; tries < 3; tries += 1) {
      const answer = await read(shown.chars, shown.deltas);
      if (!answer || typeof answer.attempt !== "number" || answer.attempt < shown.attempt) return;
      if (answer.attempt > shown.attempt) {
        const fromStart = shown.chars === 0 && shown.deltas === 0;
        startAttempt(answer.attempt);
        if (!fromStart) continue; // that answer was read from our offset: read from 0
      }
      appendText(answer.text || "");
      appendDeltas(answer.deltas || []);
      return;
    }
  }

  /** Place one chunk; true when it was placed (or was already shown). */
  function place(p) {
    const body = p.text || "";
    const values = Array.isArray(p.deltas) ? p.deltas : [];
    const deltaOffset = typeof p.delta_offset === "number" ? p.delta_offset : shown.deltas;
    if (p.offset > shown.chars || (values.length && deltaOffset > shown.deltas)) return false;
    const length = codePoints(body);
    if (p.offset + length > shown.chars) appendText(fromCodePoint(body, shown.chars - p.offset));
    if (deltaOffset + values.length > shown.deltas)
      appendDeltas(values.slice(shown.deltas - deltaOffset));
    return true;
  }

  async function onChunk(p) {
    if (!p || typeof p.attempt !== "number" || typeof p.offset !== "number") return;
    if (p.attempt < shown.attempt) return; // an earlier attempt's: never mixed in
    if (p.attempt > shown.attempt) startAttempt(p.attempt); // a new attempt starts afresh
    if (place(p)) return;
    await catchUp(); // a gap: what is missing is in Postgres, this chunk with it
    if (p.attempt === shown.attempt) place(p);
  }

  return {
    node,
    load: () => serial(catchUp),
    chunk: (payload) => serial(() => onChunk(payload)),
    state: () => ({ ...shown }),
  };
}
