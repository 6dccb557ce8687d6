// The HTTP API as the page uses it: the bearer token, JSON calls, the event stream.

const TOKEN_KEY = "taskloom.token";

/** Read `?token=` once into sessionStorage and take it out of the address bar. */
export function adoptToken() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token !== null) {
    sessionStorage.setItem(TOKEN_KEY, token);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

/** The token this tab holds, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** An error answer of the API: its status and what it said. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function explain(status, body) {
  if (status === 401 || status === 403) {
    return "This server needs its token: open the page as /?token=YOUR_TOKEN.";
  }
  let detail = body && (body.detail ?? body.error ?? body.message);
  if (Array.isArray(detail)) {
    detail = detail
      .map((d) => (d && d.msg ? `${(d.loc || []).slice(1).join(".")}: ${d.msg}` : String(d)))
      .join("; ");
  } else if (detail && typeof detail === "object") {
    detail = JSON.stringify(detail);
  }
  return detail ? String(detail) : `The server answered ${status}.`;
}

/**
 * Call the API and return its JSON answer.
 * @throws {ApiError} on an answer that is not 2xx, or when the server cannot be reached.
 */
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const held = token();
  if (held) headers.Authorization = `Bearer ${held}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let answer;
  try {
    answer = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `The server cannot be reached (${err.message}).`);
  }
  const text = await answer.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!answer.ok) throw new ApiError(answer.status, explain(answer.status, json));
  return json;
}

/** The kinds of events a run's stream sends (EventSource delivers named events only to their listeners). */
export const EVENT_KINDS = [
  "task_added",
  "task_rewritten",
  "task_ready",
  "task_started",
  "task_retried",
  "task_finished",
  "task_failed",
  "task_skipped",
  "task_cancelled",
  "task_mapped",
  "task_restored",
  "run_finished",
  "llm_call_finished",
  "plan_attempt",
  "decided",
];

/**
 * Follow a run's events after sequence number `after`. `onEvent(event)` gets each one (its
 * JSON, with `kind` and `seq`); `onEnd(data)` once the stream says the run ended. After a drop
 * the browser reconnects by itself and sends `Last-Event-ID`, so nothing is lost or repeated;
 * when it gives up (the source is CLOSED), follow again from the last event received.
 * @returns {EventSource} the source; close() it to stop following.
 */
export function follow(runId, after, onEvent, onEnd) {
  const params = new URLSearchParams();
  const held = token();
  if (held) params.set("token", held);
  if (after > 0) params.set("after", String(after));
  const query = params.toString();
  const url = `/v1/runs/${encodeURIComponent(runId)}/events${query ? `?${query}` : ""}`;
  const source = new EventSource(url);
  const take = (message) => {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (!data || typeof data !== "object") return;
    if (data.kind === undefined) data.kind = message.type;
    if (data.seq === undefined && message.lastEventId) data.seq = Number(message.lastEventId);
    onEvent(data);
  };
  for (const kind of EVENT_KINDS) source.addEventListener(kind, take);
  source.addEventListener("message", take); // an unnamed event, should a server send one
  source.addEventListener("end", (message) => {
    source.close();
    let data = {};
    try {
      data = JSON.parse(message.data) || {};
    } catch {
      data = {};
    }
    onEnd(data);
  });
  return source;
}
