// The HTTP API, with the signed-in key. The key lives in sessionStorage: it is gone when the
// tab closes and is never written anywhere else.
const KEY = "orchestra.key";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

/** An error answer of the API: its envelope's code, message and field details. */
export class ApiError extends Error {
  constructor(status, envelope) {
    const err = envelope?.error ?? {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "HTTP_ERROR";
    this.details = err.details || {};
  }
}

async function request(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${session.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401) window.dispatchEvent(new Event("orchestra:unauthorized"));
  return resp;
}

/** Call the API; the parsed JSON body, or an ApiError. */
export async function api(path, options) {
  const resp = await request(path, options);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** A binary answer (a job's artifact): {type, blob}, or null when there is none (404). */
export async function fetchBlob(path) {
  const resp = await request(path);
  if (resp.status === 404) return null;
  if (!resp.ok) throw new ApiError(resp.status, null);
  const blob = await resp.blob();
  return { type: resp.headers.get("Content-Type") || "", blob };
}

/** An ApiError as one line, field details included. */
export function describe(error) {
  if (!(error instanceof ApiError)) return String(error?.message ?? error);
  const fields = Object.entries(error.details).map(
    ([f, why]) => `${f}: ${[].concat(why).join(", ")}`,
  );
  return [`${error.code}: ${error.message}`, ...fields].join(" — ");
}
