// Same-origin JSON calls to /api/v1. The visitor cookie rides along; errors become ApiError.
export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export async function api(path, { method = "GET", body = null, signal = null } = {}) {
  let response;
  try {
    response = await fetch(API + path, {
      method,
      body,
      signal,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "offline", "We could not reach Vivify. Check your connection and try again.");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `The server answered ${response.status}.`,
      response.headers.get("Retry-After"),
    );
  }
  return data;
}
