// Building DOM nodes from data. Everything a user sent (params, results, names, errors) goes in
// as text nodes: there is no innerHTML anywhere in the console.

/** el("td", {class: "x", dataset: {id}}, "text", child) -> an element; children are nodes or text. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(
    ...children
      .flat()
      .filter((c) => c !== null && c !== undefined)
      .map(toNode),
  );
  return node;
}

function toNode(child) {
  return child instanceof Node ? child : document.createTextNode(String(child));
}

/** Replace every child of `node`. */
export function fill(node, ...children) {
  node.replaceChildren(
    ...children
      .flat()
      .filter((c) => c !== null && c !== undefined)
      .map(toNode),
  );
  return node;
}

/** JSON shown as text, bounded so a huge result cannot freeze the page. */
export function jsonBlock(value, limit = 20000) {
  let text = JSON.stringify(value, null, 2) ?? "null";
  if (text.length > limit)
    text = `${text.slice(0, limit)}\n… (${text.length - limit} more characters)`;
  return el("pre", { class: "json" }, text);
}

/** "3.2 s" between two ISO times (or from `start` to now when `end` is missing). */
export function duration(start, end) {
  if (!start) return "";
  const ms = (end ? Date.parse(end) : Date.now()) - Date.parse(start);
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** A local, readable time for an ISO string. */
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** A short message at the top of the page. */
export function flash(message, kind = "info") {
  fill(document.getElementById("flash"), message ? el("p", { class: kind }, message) : null);
}
