// The page: the list of runs, a form to start one, and one run's graph, timeline and tasks.
//
// Events from the stream are queued and applied once per animation frame; a frame redraws
// only what they changed (nodes recoloured in place), and the costlier work (the graph's
// layout, the timeline's lanes, asking the API for the run's details) is throttled.

import { ApiError, adoptToken, call, follow } from "./api.js";
import { DagView } from "./dag.js";
import { html } from "./dom.js";
import { RunModel } from "./model.js";
import { TimelineView, buildTimeline, callText, roundUp } from "./timeline.js";

const PAGE = 50; // runs per page of the list
const LAYOUT_EVERY = 300; // ms between layouts of a growing graph
const TIMELINE_EVERY = 150; // ms between timeline drawings
const DETAIL_EVERY = 1000; // ms between asking for a running run's details
const TICK = 250; // ms: running bars grow this often
const RUNS_EVERY = 5000; // ms between refreshes of the list
const OUTPUT_LIMIT = 20000; // characters of an output shown
const RECONNECT_FIRST = 500; // ms before following a lost stream again; doubled each time
const RECONNECT_MOST = 15000;

const $ = (id) => document.getElementById(id);

function notice(text) {
  const box = $("notice");
  box.textContent = text || "";
  box.hidden = !text;
}

function failure(err) {
  return err instanceof ApiError ? err.message : String(err && err.message ? err.message : err);
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  return value < 1 ? `${(value * 1000).toFixed(1)} ms` : `${value.toFixed(2)} s`;
}

function statusBadge(element, status) {
  element.textContent = status || "";
  element.className = `status ${status || ""}`;
}

// -- the list of runs ------------------------------------------------------------------------

const runs = { list: [], byId: new Map(), next: null, current: null, busy: false };

function remember(found, atEnd) {
  const added = [];
  for (const run of found) {
    const known = runs.byId.get(run.id);
    if (known) Object.assign(known, run);
    else {
      runs.byId.set(run.id, run);
      added.push(run);
    }
  }
  runs.list = atEnd ? [...runs.list, ...added] : [...added, ...runs.list];
  if (!atEnd) runs.list.sort((a, b) => (b.started_at ?? 0) - (a.started_at ?? 0));
}

async function refreshRuns() {
  if (runs.busy) return;
  runs.busy = true;
  try {
    const page = await call("GET", `/v1/runs?limit=${PAGE}`);
    remember(page.runs || [], false);
    if (runs.list.length <= PAGE) runs.next = page.next ?? null;
    notice("");
    drawRuns();
  } catch (err) {
    notice(failure(err));
  } finally {
    runs.busy = false;
  }
}

async function olderRuns() {
  if (!runs.next) return;
  try {
    const page = await call("GET", `/v1/runs?limit=${PAGE}&before=${encodeURIComponent(runs.next)}`);
    remember(page.runs || [], true);
    runs.next = page.next ?? null;
    drawRuns();
  } catch (err) {
    notice(failure(err));
  }
}

function drawRuns() {
  const items = runs.list.map((run) => {
    const when = run.started_at ? new Date(run.started_at * 1000).toLocaleString() : "";
    const what = (run.request || "").split("\n")[0] || run.id;
    const status = html("span", { class: `status ${run.status}` }, run.status || "");
    const link = html(
      "a",
      { href: `#/runs/${encodeURIComponent(run.id)}`, title: run.request || run.id },
      html("span", { class: "what" }, what),
      status,
      " ",
      html("span", { class: "when" }, `${run.kind || ""} · ${when} · ${run.id.slice(0, 8)}`),
    );
    const item = html("li", { "data-run": run.id }, link);
    if (run.id === runs.current) item.classList.add("active");
    return item;
  });
  $("runs").replaceChildren(...items);
  $("no-runs").hidden = runs.list.length > 0;
  $("more-runs").hidden = !runs.next;
}

// -- starting a run --------------------------------------------------------------------------

async function startRun(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("form-error");
  error.hidden = true;
  const kind = form.elements.kind.value;
  const text = $("run-text").value;
  if (!text.trim()) {
    error.textContent = kind === "plan" ? "Write a plan first." : "Write a question first.";
    error.hidden = false;
    return;
  }
  const body = { [kind]: text };
  const most = $("max-concurrency").value.trim();
  if (most) body.max_concurrency = Number(most);
  const button = $("start");
  button.disabled = true;
  try {
    const started = await call("POST", "/v1/runs", body);
    const shown = { id: started.id, status: started.status || "running", kind: kind === "plan" ? "plan" : "agent" };
    remember([{ ...shown, request: text, started_at: Date.now() / 1000 }], false);
    window.location.hash = `#/runs/${encodeURIComponent(started.id)}`;
    refreshRuns();
  } catch (err) {
    error.textContent = failure(err);
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

// -- one run ---------------------------------------------------------------------------------

/** One run on screen: its model, the stream feeding it, and the views drawing it. */
class RunView {
  constructor(id) {
    this.id = id;
    this.model = new RunModel(id);
    this.dag = new DagView($("dag"));
    this.timeline = new TimelineView($("timeline"));
    this.queue = [];
    this.frame = 0;
    this.timers = new Map(); // throttled work -> its timer
    this.last = new Map(); // throttled work -> when it last ran
    this.eventClock = performance.now();
    this.selected = null;
    this.detailBusy = false;
    this.detailAgain = false;
    this.closed = false;
    this.received = 0; // the last sequence number the stream delivered
    this.retries = 0;
    this.connect();
    this.tick = setInterval(() => {
      if (this.live()) {
        this.model.timelineChanged = true;
        this.schedule();
      }
    }, TICK);
    this.fetchDetail();
  }

  close() {
    this.closed = true;
    this.source.close();
    clearTimeout(this.reconnecting);
    clearInterval(this.tick);
    for (const timer of this.timers.values()) clearTimeout(timer);
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  live() {
    return !this.model.ended && this.model.status === "running";
  }

  push(event) {
    this.queue.push(event);
    this.schedule();
  }

  end(data) {
    this.queue.push({ kind: "__end__", data });
    this.schedule();
    this.fetchDetail(); // the last word: final statuses, outputs, the answer
    refreshRuns();
  }

  connect() {
    const source = follow(
      this.id,
      this.received,
      (event) => {
        if (Number(event.seq) > this.received) this.received = Number(event.seq);
        this.push(event);
      },
      (data) => this.end(data),
    );
    source.addEventListener("open", () => {
      this.retries = 0;
      $("stream-state").hidden = true;
    });
    source.addEventListener("error", () => this.streamTrouble());
    this.source = source;
  }

  streamTrouble() {
    if (this.model.ended || this.closed) return;
    $("stream-state").textContent = "event stream lost; reconnecting…";
    $("stream-state").hidden = false;
    // The browser retries a dropped stream by itself (sending Last-Event-ID), but gives up on
    // some failures (an error answer, say): then follow again, from the last event received.
    if (this.source.readyState !== EventSource.CLOSED) return;
    const delay = Math.min(RECONNECT_MOST, RECONNECT_FIRST * 2 ** this.retries);
    this.retries += 1;
    clearTimeout(this.reconnecting);
    this.reconnecting = setTimeout(() => {
      if (!this.closed && !this.model.ended) this.connect();
    }, delay);
    this.fetchDetail();
  }

  schedule() {
    if (!this.frame && !this.closed) this.frame = requestAnimationFrame(() => this.draw());
  }

  /** Whether throttled work may run now; if not, a frame is booked for when it may. */
  due(name, every) {
    const now = performance.now();
    const since = now - (this.last.get(name) ?? -Infinity);
    if (since >= every) {
      this.last.set(name, now);
      return true;
    }
    if (!this.timers.has(name)) {
      this.timers.set(
        name,
        setTimeout(() => {
          this.timers.delete(name);
          this.schedule();
        }, every - since),
      );
    }
    return false;
  }

  draw() {
    this.frame = 0;
    const m = this.model;
    const queue = this.queue;
    this.queue = [];
    for (const event of queue) {
      if (event.kind === "__end__") m.end(event.data);
      else if (m.apply(event)) this.eventClock = performance.now();
    }
    if (m.needsDetail && this.due("detail", DETAIL_EVERY)) this.fetchDetail();
    const selectedChanged = this.selected !== null && m.dirtyTasks.has(m.tasks.get(this.selected));
    if (m.dirtyTasks.size) {
      this.dag.update(m.dirtyTasks, m.tasks);
      m.dirtyTasks.clear();
    }
    if (m.structureChanged && this.due("layout", LAYOUT_EVERY)) {
      m.structureChanged = false;
      this.dag.arrange(m.order, m.tasks);
    }
    if (m.timelineChanged && this.due("timeline", TIMELINE_EVERY)) {
      m.timelineChanged = false;
      this.drawTimeline();
    }
    if (m.headerChanged) {
      m.headerChanged = false;
      this.drawHeader();
    }
    if (selectedChanged) this.drawTask();
  }

  drawTimeline() {
    const m = this.model;
    const live = this.live();
    const now = m.elapsed() + (live ? (performance.now() - this.eventClock) / 1000 : 0);
    const timeline = buildTimeline(m, now, live);
    this.timeline.draw(timeline, live ? roundUp(timeline.duration) : timeline.duration);
  }

  drawHeader() {
    const m = this.model;
    $("run-title").textContent = `${m.kind === "agent" ? "Question" : "Run"} ${m.id.slice(0, 12)}`;
    $("run-title").title = m.id;
    statusBadge($("run-status"), m.status);
    const counts = [...m.counts()].map(([state, n]) => `${n} ${state}`);
    $("run-counts").textContent = `${m.order.length} task${m.order.length === 1 ? "" : "s"}${counts.length ? `: ${counts.join(", ")}` : ""}`;
    $("run-request").textContent = m.request;
    $("plan-box").hidden = !m.plan || m.kind !== "agent";
    $("plan-text").textContent = m.plan || "";
    $("answer-box").hidden = !m.answer;
    $("answer").textContent = m.answer || "";
    $("cancel-run").hidden = !this.live();
    $("resume-run").hidden = m.status !== "abandoned";
    const listed = runs.byId.get(m.id);
    if (listed && listed.status !== m.status && m.loaded) {
      listed.status = m.status;
      drawRuns();
    }
  }

  async fetchDetail() {
    if (this.detailBusy) {
      this.detailAgain = true;
      return;
    }
    this.detailBusy = true;
    try {
      const run = await call("GET", `/v1/runs/${encodeURIComponent(this.id)}`);
      if (this.closed) return;
      this.model.merge(run);
      $("run-error").hidden = true;
      if (this.selected !== null) this.drawTask();
      this.schedule();
    } catch (err) {
      $("run-error").textContent = failure(err);
      $("run-error").hidden = false;
    } finally {
      this.detailBusy = false;
      if (this.detailAgain && !this.closed) {
        this.detailAgain = false;
        this.fetchDetail();
      }
    }
  }

  select(id) {
    this.selected = id;
    this.dag.select(id);
    $("task-panel").hidden = id === null;
    if (id === null) return;
    const t = this.model.tasks.get(id);
    // Outputs and arguments come with the run's details, not always with its events.
    if (t && (!t.args || (t.status === "done" && !t.hasOutput) || !t.known)) this.fetchDetail();
    this.drawTask();
  }

  drawTask() {
    const t = this.model.tasks.get(this.selected);
    if (!t) return;
    const m = this.model;
    $("task-title").textContent = `Task ${t.id}`;
    statusBadge($("task-status"), t.status);
    $("task-call").textContent = callText(t);
    $("task-args").textContent = t.args || "";
    $("task-deps").replaceChildren(
      ...(t.deps.length
        ? t.deps.map((d) => html("button", { class: "link", type: "button", "data-goto": d }, d))
        : ["none"]),
    );
    $("task-attempts").textContent = String(t.attempts || 0) + (t.retries.length ? ` (${t.retries.length} retried)` : "");
    const start = m.rel(t.started);
    const finish = m.rel(t.finished);
    let times = "not started yet";
    if (start === null && finish !== null) times = `never ran; ${t.status} at ${finish.toFixed(3)} s`;
    if (start !== null) times = `started at ${start.toFixed(3)} s`;
    if (start !== null && finish !== null) {
      times += `, ended at ${finish.toFixed(3)} s (took ${seconds(finish - start)})`;
    }
    $("task-times").textContent = times;
    let output = "";
    if (t.hasOutput) {
      output = typeof t.output === "string" ? t.output : JSON.stringify(t.output, null, 2);
      if (output.length > OUTPUT_LIMIT) output = `${output.slice(0, OUTPUT_LIMIT)}… (${output.length.toLocaleString("en")} characters)`;
    } else if (t.status === "done") {
      output = "…";
    }
    $("task-output").textContent = output;
    $("task-error").textContent = t.error || "";
  }

  async cancel() {
    const button = $("cancel-run");
    button.disabled = true;
    try {
      await call("POST", `/v1/runs/${encodeURIComponent(this.id)}/cancel`);
    } catch (err) {
      $("run-error").textContent = failure(err);
      $("run-error").hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  async resume() {
    try {
      await call("POST", `/v1/runs/${encodeURIComponent(this.id)}/resume`);
      openRun(this.id, true);
    } catch (err) {
      $("run-error").textContent = failure(err);
      $("run-error").hidden = false;
    }
  }
}

let view = null;

function openRun(id, again = false) {
  if (view && view.id === id && !again) return;
  if (view) view.close();
  $("task-panel").hidden = true;
  $("run-error").hidden = true;
  $("stream-state").hidden = true;
  $("run-view").hidden = false;
  $("empty-view").hidden = true;
  view = new RunView(id);
  runs.current = id;
  drawRuns();
}

function closeRun() {
  if (view) view.close();
  view = null;
  runs.current = null;
  $("run-view").hidden = true;
  $("empty-view").hidden = false;
  drawRuns();
}

function route() {
  const found = /^#\/runs\/(.+)$/.exec(window.location.hash);
  if (found) openRun(decodeURIComponent(found[1]));
  else closeRun();
}

function taskClicked(event) {
  const target = event.target.closest("[data-task]");
  if (target && view) view.select(target.dataset.task);
}

function main() {
  adoptToken();
  $("new-run").addEventListener("submit", startRun);
  $("more-runs").addEventListener("click", olderRuns);
  $("refresh-runs").addEventListener("click", refreshRuns);
  $("cancel-run").addEventListener("click", () => view && view.cancel());
  $("resume-run").addEventListener("click", () => view && view.resume());
  $("close-task").addEventListener("click", () => view && view.select(null));
  $("dag").addEventListener("click", taskClicked);
  $("timeline").addEventListener("click", taskClicked);
  $("task-deps").addEventListener("click", (event) => {
    const target = event.target.closest("[data-goto]");
    if (target && view) view.select(target.dataset.goto);
  });
  window.addEventListener("hashchange", route);
  setInterval(() => {
    if (document.visibilityState === "visible") refreshRuns();
  }, RUNS_EVERY);
  refreshRuns();
  route();
}

main();
