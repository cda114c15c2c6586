// The Callboard API as the dashboard calls it: every path it uses, and one fetch wrapper that
// sends the bearer token and turns an error answer (RFC 9457 problem) into an ApiError.

// Every API path the page calls.
export const API = {
  openapi: "/openapi.json",
  stats: "/stats",
  rebalance: "/rebalance?limit=8",
  tasks: "/tasks",
  task: (id) => `/tasks/${encodeURIComponent(id)}`,
  events: (id) => `/tasks/${encodeURIComponent(id)}/events`,
  cancel: (id) => `/tasks/${encodeURIComponent(id)}/cancel`,
  retry: (id) => `/tasks/${encodeURIComponent(id)}/retry`,
};

export class ApiError extends Error {
  constructor(status, title, detail, errors) {
    super(detail || title);
    this.status = status; // 0 when the API did not answer at all
    this.title = title;
    this.errors = Array.isArray(errors) ? errors : []; // [{field, message}] of a 422
  }
}

// A function call(method, path, body) -> {status, data} that sends token() as a bearer token,
// and calls onUnauthorized(error) on a 401 before it throws.
export function client(token, onUnauthorized) {
  return async function call(method, path, body) {
    if (!token()) throw new ApiError(401, "Unauthorized", "No API token entered yet.");
    const headers = { Accept: "application/json", Authorization: `Bearer ${token()}` };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, "API unreachable", `The API did not answer (${error.message}).`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const problem = data && typeof data === "object" ? data : {};
      const error = new ApiError(
        response.status,
        problem.title || response.statusText || `HTTP ${response.status}`,
        problem.detail || text.slice(0, 300),
        problem.errors,
      );
      if (response.status === 401) onUnauthorized(error);
      throw error;
    }
    return { status: response.status, data };
  };
}

// One line for a person: "Not ready (503): Unreachable: redis."
export function describe(error) {
  if (!(error instanceof ApiError)) return `This page failed: ${error}`;
  const status = error.status ? ` (${error.status})` : "";
  return `${error.title}${status}: ${error.message}`;
}
