// API access: every call carries the signed-in operator's token; errors of
// the platform (RFC 9457 problem details) and of the Kafka Connect API
// ({"error_code", "message"}) become one ApiError with a readable message.

const TOKEN_KEY = "trackops.token";

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message, fields) {
    super(message);
    this.status = status;
    this.fields = fields || [];
  }
}

// Handlers the app installs: called when a token stops working.
export const hooks = { unauthorized: () => {} };

export async function api(path, opts = {}) {
  const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  let body = opts.body;
  if (body !== undefined && typeof body !== "string") {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, { method: opts.method || "GET", headers, body, signal: opts.signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "TrackOps did not answer (" + e.message + ")");
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (resp.ok || (opts.allow || []).includes(resp.status)) return data;
  if (resp.status === 401 && t && !path.startsWith("/api/v1/auth/login")) hooks.unauthorized();
  let msg = resp.statusText || "request failed";
  let fields = [];
  if (data && typeof data === "object") {
    msg = data.detail || data.message || data.title || msg;
    fields = data.errors || [];
  }
  throw new ApiError(resp.status, `${resp.status}: ${msg}`, fields);
}

// Connect is the Kafka Connect REST API of the CDC connectors, served on
// the platform's own port.
export const connectPath = p => "/api/v1/ops/connect" + p;
