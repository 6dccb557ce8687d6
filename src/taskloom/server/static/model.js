// One run as the page knows it: built from its events, filled in by `GET /v1/runs/{id}`.
//
// Events set a task's state in sequence order; a snapshot of the run (which may be older or
// newer than the events seen so far) only moves a task forward, never back. Whatever changed
// is remembered in the `dirty` fields, so that the next animation frame redraws only that.

/** States a task never leaves (a resumed run may turn one final state into another). */
export const FINAL = new Set(["done", "failed", "skipped", "cancelled", "interrupted"]);

const RANK = { pending: 0, ready: 1, running: 2 };

function rank(state) {
  return FINAL.has(state) ? 3 : (RANK[state] ?? 0);
}

/** Statuses of a run that has not ended. */
export const UNFINISHED = new Set(["running", "abandoned"]);

const EPOCH = 1e8; // a time past this is unix seconds; below it, seconds after the run's start

function newTask(id, index) {
  return {
    id,
    index, // its position in the order tasks were added
    tool: "",
    args: "",
    deps: [],
    status: "pending",
    output: undefined,
    hasOutput: false,
    error: null,
    attempts: 0,
    started: null,
    finished: null,
    retries: [],
    elements: null, // a map task's element count, once it fanned out
    known: false, // whether its call (tool, arguments, dependencies) is known
  };
}

export class RunModel {
  constructor(id) {
    this.id = id;
    this.tasks = new Map();
    this.order = [];
    this.calls = []; // model calls: {purpose, start, end, round, model, promptTokens, completionTokens}
    this.kind = "";
    this.status = "running";
    this.request = "";
    this.answer = null;
    this.plan = null;
    this.startedAt = null; // unix seconds
    this.finishedAt = null;
    this.firstEpoch = null;
    this.lastAt = 0; // the latest moment seen, as recorded (relative or unix seconds)
    this.lastSeq = 0;
    this.ended = false;
    this.loaded = false;
    // What changed since the last frame drew it.
    this.dirtyTasks = new Set();
    this.structureChanged = false;
    this.timelineChanged = false;
    this.headerChanged = true;
    this.needsDetail = false;
  }

  /** Seconds after the run's start, from a recorded time in either form. */
  rel(at) {
    if (at === null || at === undefined) return null;
    if (at > EPOCH) {
      const zero = this.startedAt ?? this.firstEpoch ?? at;
      return Math.max(0, at - zero);
    }
    return at;
  }

  /** The latest event of the run seen so far, in seconds after its start (as the export's). */
  elapsed() {
    return this.rel(this.lastAt) ?? 0;
  }

  task(id) {
    let t = this.tasks.get(id);
    if (t === undefined) {
      t = newTask(id, this.order.length);
      this.tasks.set(id, t);
      this.order.push(t);
      this.structureChanged = true;
      this.timelineChanged = true;
      this.headerChanged = true;
    }
    this.dirtyTasks.add(t);
    return t;
  }

  setState(t, state) {
    if (FINAL.has(t.status) && !FINAL.has(state)) return; // a late echo never reopens a task
    if (t.status !== state) {
      t.status = state;
      this.timelineChanged = true;
      this.headerChanged = true;
    }
  }

  /** Apply one event of the stream. Returns whether it was new. */
  apply(event) {
    const seq = Number(event.seq);
    if (Number.isFinite(seq) && seq > 0) {
      if (seq <= this.lastSeq) return false;
      this.lastSeq = seq;
    }
    const at = typeof event.at === "number" ? event.at : null;
    if (at !== null) {
      if (at > EPOCH && this.firstEpoch === null) this.firstEpoch = at;
      if (at > this.lastAt) this.lastAt = at;
    }
    const id = event.task_id === undefined || event.task_id === null ? null : String(event.task_id);
    if (id !== null) this.taskEvent(event, id, at);
    else this.runEvent(event, at);
    return true;
  }

  taskEvent(event, id, at) {
    const t = this.task(id);
    switch (event.kind) {
      case "task_added":
      case "task_rewritten":
        this.learnCall(t, event);
        break;
      case "task_ready":
        this.setState(t, "ready");
        break;
      case "task_started":
        this.setState(t, "running");
        t.started = at;
        t.attempts = Math.max(t.attempts, 1);
        if (event.arguments !== undefined && !t.args) t.args = argumentText(event.arguments);
        break;
      case "task_retried":
        t.retries.push(at);
        t.attempts = Math.max(t.attempts, Number(event.attempt || 0) + 1);
        break;
      case "task_finished":
        this.setState(t, "done");
        t.finished = at;
        if ("output" in event) {
          t.output = event.output;
          t.hasOutput = true;
        }
        break;
      case "task_failed":
      case "task_skipped":
      case "task_cancelled":
        this.setState(t, event.kind.slice("task_".length)); // failed, skipped, cancelled
        t.finished = at;
        if (event.error !== undefined && event.error !== null) t.error = String(event.error);
        break;
      case "task_mapped":
        t.elements = Array.isArray(event.elements) ? event.elements.length : event.elements;
        break;
      case "task_restored":
        if (event.status) this.setState(t, String(event.status));
        break;
      default:
        break;
    }
    this.timelineChanged = true;
  }

  learnCall(t, event) {
    const deps = event.dependencies ?? event.deps;
    if (event.tool) {
      t.tool = String(event.tool);
      if (Array.isArray(deps)) this.setDeps(t, deps);
      if (event.args !== undefined) t.args = String(event.args);
      t.known = Array.isArray(deps);
    }
    if (!t.known) this.needsDetail = true; // the stream did not say what it calls: ask the run
  }

  setDeps(t, deps) {
    const next = deps.map(String);
    if (next.length !== t.deps.length || next.some((d, i) => d !== t.deps[i])) {
      t.deps = next;
      this.structureChanged = true;
    }
  }

  runEvent(event, at) {
    switch (event.kind) {
      case "llm_call_finished": {
        const latency = Number(event.latency_s || 0);
        this.calls.push({
          purpose: String(event.purpose ?? ""),
          end: at ?? 0,
          latency,
          round: event.round,
          model: event.model ?? "?",
          promptTokens: event.prompt_tokens ?? "?",
          completionTokens: event.completion_tokens ?? "?",
        });
        this.timelineChanged = true;
        break;
      }
      case "plan_attempt":
        // The plan's text is kept with the run, not in the event: ask for it once it is whole.
        if (event.valid !== null && event.valid !== undefined) this.needsDetail = true;
        break;
      case "decided":
        if (event.action === "finish" && event.answer) {
          this.answer = String(event.answer);
          this.headerChanged = true;
        }
        break;
      case "run_finished":
        if (this.kind !== "agent" && event.status) this.status = String(event.status);
        this.headerChanged = true;
        break;
      default:
        break;
    }
  }

  /** The stream ended: the run is over (its snapshot then gives the last word). */
  end(data) {
    this.ended = true;
    if (data && data.status) this.status = String(data.status);
    this.headerChanged = true;
    this.timelineChanged = true;
  }

  /** Merge a snapshot of the run (`GET /v1/runs/{id}`). */
  merge(run) {
    this.loaded = true;
    this.kind = run.kind ?? this.kind;
    this.request = run.request ?? this.request;
    this.plan = run.plan ?? this.plan;
    if (run.answer !== undefined && run.answer !== null) this.answer = String(run.answer);
    if (typeof run.started_at === "number") this.startedAt = run.started_at;
    if (typeof run.finished_at === "number") this.finishedAt = run.finished_at;
    if (run.status && (!this.ended || !UNFINISHED.has(run.status))) this.status = run.status;
    this.needsDetail = false;
    for (const item of run.tasks || []) this.mergeTask(item);
    this.headerChanged = true;
    this.timelineChanged = true;
  }

  mergeTask(item) {
    const t = this.task(String(item.id));
    if (item.tool) t.tool = String(item.tool);
    if (item.args !== undefined && item.args !== null) t.args = argumentText(item.args);
    if (Array.isArray(item.deps)) this.setDeps(t, item.deps);
    t.known = true;
    if (item.status && rank(item.status) >= rank(t.status)) this.setState(t, String(item.status));
    if (item.output !== undefined && item.output !== null) {
      t.output = item.output;
      t.hasOutput = true;
    }
    if (item.error) t.error = String(item.error);
    if (typeof item.attempts === "number") t.attempts = Math.max(t.attempts, item.attempts);
    if (typeof item.started_at === "number") t.started = item.started_at;
    if (typeof item.finished_at === "number") t.finished = item.finished_at;
  }

  /** How many tasks are in each state. */
  counts() {
    const counts = new Map();
    for (const t of this.order) counts.set(t.status, (counts.get(t.status) || 0) + 1);
    return counts;
  }
}

/** A task's arguments as text: as the API gives them, or a JSON object's `key=value` list. */
export function argumentText(args) {
  if (typeof args === "string") return args;
  if (args && typeof args === "object" && !Array.isArray(args)) {
    return Object.entries(args)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(", ");
  }
  return JSON.stringify(args);
}
