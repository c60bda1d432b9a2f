// The submit form, built from each generator's params schema (GET /api/v1/generators).
import { ApiError, api, describe } from "/console/api.js";
import { el, fill, flash } from "/console/dom.js";

/** Render the submit form into `view`. */
export function submitForm(view) {
  let left = false;
  const kind = el("select", { id: "kind", name: "kind" });
  const fields = el("fieldset", { id: "params" });
  const errors = el("ul", { id: "form-errors", class: "error" });
  const extra = {
    priority: el("input", {
      type: "number",
      name: "priority",
      min: 0,
      max: 9,
      step: 1,
      placeholder: "0-9",
    }),
    max_retries: el("input", { type: "number", name: "max_retries", min: 0, step: 1 }),
    card_id: el("input", { name: "card_id", size: 20 }),
  };
  const form = el(
    "form",
    { id: "submit-form", class: "card" },
    el("h1", {}, "Submit a job"),
    el("label", { for: "kind" }, "Kind"),
    kind,
    el("p", { id: "kind-description", class: "hint" }),
    fields,
    el(
      "details",
      {},
      el("summary", {}, "Options"),
      ...Object.entries(extra).map(([name, input]) => el("label", {}, `${name} `, input)),
    ),
    errors,
    el("button", { type: "submit", id: "submit" }, "Submit"),
  );
  fill(view, form);

  let generators = [];
  let readParams = () => ({});
  api("/generators")
    .then((answer) => {
      if (left) return;
      generators = answer.items;
      fill(
        kind,
        generators.map((g) => el("option", { value: g.kind }, g.kind)),
      );
      const preferred = generators.find((g) => g.kind === "sleep") ? "sleep" : generators[0]?.kind;
      kind.value = preferred ?? "";
      drawFields();
    })
    .catch((err) => flash(`Could not load generators: ${describe(err)}`, "error"));

  function drawFields() {
    const gen = generators.find((g) => g.kind === kind.value);
    document.getElementById("kind-description").textContent = gen?.description ?? "";
    readParams = paramsFields(fields, gen?.params_schema ?? {});
  }
  kind.addEventListener("change", drawFields);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errors.replaceChildren();
    let body;
    try {
      body = { kind: kind.value, params: readParams() };
    } catch (err) {
      errors.append(el("li", {}, err.message));
      return;
    }
    for (const [name, input] of Object.entries(extra)) {
      if (input.value.trim() === "") continue;
      body[name] = input.type === "number" ? Number(input.value) : input.value.trim();
    }
    try {
      const job = await api("/jobs", { method: "POST", body });
      flash(`Job ${job.id} submitted.`);
      location.hash = "#/jobs";
    } catch (err) {
      // The API's refusal, field by field.
      const details = err instanceof ApiError ? Object.entries(err.details) : [];
      errors.append(
        el("li", {}, describe(err)),
        ...details.map(([f, why]) =>
          el("li", { dataset: { field: f } }, `${f}: ${[].concat(why).join(", ")}`),
        ),
      );
    }
  });
  return () => {
    left = true;
  };
}

/**
 * Inputs for the schema's top-level properties (numbers, integers, strings, enums, booleans; any
 * other type as JSON). A schema without properties (e.g. echo's "any object") gets one JSON box.
 * Returns the function that reads the params back (it throws on JSON that does not parse).
 */
function paramsFields(node, schema) {
  const props = schema && typeof schema.properties === "object" ? schema.properties : null;
  if (!props) {
    const box = el("textarea", { name: "params", rows: 6, cols: 60 }, "{}");
    fill(node, el("legend", {}, "params (JSON)"), box);
    return () => parseJson(box.value, "params");
  }
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  const readers = Object.entries(props).map(([name, prop]) =>
    field(name, prop || {}, required.has(name)),
  );
  fill(node, el("legend", {}, "params"), ...readers.map((r) => r.node));
  return () =>
    Object.fromEntries(readers.map((r) => [r.name, r.read()]).filter(([, v]) => v !== undefined));
}

function field(name, prop, required) {
  const id = `param-${name.replace(/[^a-z0-9_-]/gi, "_")}`;
  const label = el("label", { for: id }, `${name}${required ? " *" : ""}`);
  const type = Array.isArray(prop.type) ? prop.type[0] : prop.type;
  let input;
  let read;
  if (Array.isArray(prop.enum)) {
    input = el(
      "select",
      { id, name },
      el("option", { value: "" }, ""),
      ...prop.enum.map((v, i) => el("option", { value: String(i) }, JSON.stringify(v))),
    );
    read = () => (input.value === "" ? undefined : prop.enum[Number(input.value)]);
  } else if (type === "number" || type === "integer") {
    input = el("input", {
      id,
      name,
      type: "number",
      step: type === "integer" ? 1 : "any",
      min: prop.minimum,
      max: prop.maximum,
      required,
    });
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (type === "boolean") {
    input = el("input", { id, name, type: "checkbox" });
    read = () => input.checked;
  } else if (type === "string") {
    input = el("input", { id, name, maxlength: prop.maxLength, required, size: 40 });
    read = () => (input.value === "" ? undefined : input.value);
  } else {
    input = el("textarea", { id, name, rows: 3, cols: 50, placeholder: "JSON" });
    read = () => (input.value.trim() === "" ? undefined : parseJson(input.value, name));
  }
  if (prop.default !== undefined && input.type !== "checkbox" && input.tagName !== "SELECT")
    input.value = type ? String(prop.default) : JSON.stringify(prop.default);
  const hint = prop.description ? el("span", { class: "hint" }, ` ${prop.description}`) : null;
  return { name, node: el("div", { class: "field" }, label, input, hint), read };
}

function parseJson(text, name) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${name}: not valid JSON (${err.message})`);
  }
}
