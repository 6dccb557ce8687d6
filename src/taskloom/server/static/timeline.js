// The run's timeline (a Gantt chart), drawn as `taskloom trace --svg` draws it.
//
// This is the drawing of src/taskloom/telemetry/timeline.py, ported: the same lanes (each
// task in the first slot free when it starts; the planner's and joiner's model calls in lanes
// of their own above; tasks that never ran as ticks in a lane below), the same colours, sizes
// and axis. tests/unit/test_web_static.py keeps the constants in step with the Python ones.
// While a run goes on, running bars grow to "now" and the time axis grows in round steps, so
// a redraw moves only the bars that changed.

import { svg, setAttrs } from "./dom.js";

export const COLOURS = {
  done: "#43a047",
  failed: "#e53935",
  skipped: "#9e9e9e",
  cancelled: "#fb8c00",
  interrupted: "#8e24aa",
  running: "#1e88e5",
  pending: "#cfd8dc",
  ready: "#cfd8dc",
  planner: "#5c6bc0",
  joiner: "#00897b",
  model: "#5c6bc0",
};
export const OTHER_COLOUR = "#78909c";

const PURPOSES = { plan: "planner", join: "joiner" };
const VERB = { planner: "plan", joiner: "join" };
const NOT_RUN = "not run";
const ROW = 22;
const TOP = 30;
const GUTTER = 92;
const PAD = 16;
const LEGEND = 30;
const BODY = 1200;
const CHAR = 6.6;
export const WIDTH = 1000;

// -- lanes ---------------------------------------------------------------------------------

/** A binary min-heap of arrays compared element by element. */
class Heap {
  constructor() {
    this.items = [];
  }
  get size() {
    return this.items.length;
  }
  peek() {
    return this.items[0];
  }
  static less(a, b) {
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) return a[i] < b[i];
    }
    return false;
  }
  push(item) {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (!Heap.less(items[i], items[up])) break;
      [items[i], items[up]] = [items[up], items[i]];
      i = up;
    }
  }
  pop() {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && Heap.less(items[l], items[m])) m = l;
        if (r < items.length && Heap.less(items[r], items[m])) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m], items[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * Put each [start, end] interval in a lane so that no two in one lane overlap: taken by start
 * time, each goes in the lowest-numbered lane free by then (as `assign_lanes` in Python).
 * @returns {number[]} the lane of each interval, from 0, in the order given.
 */
export function assignLanes(spans) {
  const order = spans.map((_, i) => i);
  order.sort((a, b) => spans[a][0] - spans[b][0] || spans[a][1] - spans[b][1] || a - b);
  const lanes = new Array(spans.length).fill(0);
  const busy = new Heap(); // [end, lane] of lanes in use
  const free = new Heap(); // [lane]
  let count = 0;
  for (const i of order) {
    const [start, end] = spans[i];
    while (busy.size && busy.peek()[0] <= start) free.push([busy.pop()[1]]);
    let lane;
    if (free.size) lane = free.pop()[0];
    else lane = count++;
    lanes[i] = lane;
    busy.push([Math.max(start, end), lane]);
  }
  return lanes;
}

// -- what to draw ----------------------------------------------------------------------------

function seconds(value) {
  return value < 1 ? `${(value * 1000).toFixed(1)} ms` : `${value.toFixed(2)} s`;
}

function spanText(start, end) {
  return `${start.toFixed(3)}–${end.toFixed(3)} s (${seconds(end - start)})`;
}

function clip(text, limit) {
  if (text.length <= limit) return text;
  const half = Math.floor((limit - 3) / 2);
  return `${text.slice(0, half)}...${text.slice(-half)} (${text.length.toLocaleString("en")} characters)`;
}

/** A task's call as a plan line shows it: `3. tool(args)`. */
export function callText(t) {
  return `${t.id}. ${t.tool || "?"}(${t.args || ""})`;
}

function modelBars(calls, purpose, lanes, bars) {
  const slots = assignLanes(calls.map((c) => [c.start, c.end]));
  const first = lanes.length;
  const count = Math.max(...slots) + 1;
  for (let n = 0; n < count; n++) lanes.push(n === 0 ? purpose : `${purpose} ${n + 1}`);
  calls.forEach((c, i) => {
    const round = c.round;
    bars.push({
      key: `call:${c.index}`,
      kind: purpose,
      label: round ? `${VERB[purpose] ?? purpose} ${round}` : purpose,
      detail: () =>
        `${purpose} (round ${round}): ${c.model}, ${spanText(c.start, c.end)}; ` +
        `${c.promptTokens} tokens in, ${c.completionTokens} out`,
      state: purpose,
      start: c.start,
      end: c.end,
      lane: first + slots[i],
      taskId: null,
      retries: [],
    });
  });
}

function taskDetail(t, state, start, end) {
  const times = t.started !== null ? spanText(start, end) : `at ${start.toFixed(3)} s`;
  let detail = `${clip(callText(t), 200)}\n${state}, ${times}`;
  if (t.retries.length) {
    detail += `, ${t.retries.length} retr${t.retries.length === 1 ? "y" : "ies"}`;
  }
  if (t.error) detail += `\nerror: ${clip(t.error, 300)}`;
  return detail;
}

function taskBar(model, t, state, start, end, lane) {
  return {
    key: `task:${t.id}`,
    kind: "task",
    label: `${t.id} ${t.tool}`,
    detail: () => taskDetail(t, state, start, end), // made when hovered: most bars never are
    state,
    start,
    end,
    lane,
    taskId: t.id,
    retries: t.retries.map((at) => model.rel(at)),
  };
}

/**
 * The timeline of a run as far as it is known (as `build_timeline` in Python).
 * @param {RunModel} model the run.
 * @param {number} now seconds after the run's start that count as "now" while it runs.
 * @param {boolean} live whether the run still goes on (running bars end at `now`; tasks still
 *   waiting are not drawn yet).
 * @returns {{lanes: string[], bars: object[], duration: number}}
 */
export function buildTimeline(model, now, live) {
  let last = model.elapsed();
  const calls = model.calls.map((c, index) => {
    const end = model.rel(c.end) ?? 0;
    return { ...c, index, purpose: PURPOSES[c.purpose] ?? "model", start: Math.max(0, end - c.latency), end };
  });
  for (const c of calls) last = Math.max(last, c.end);
  for (const t of model.order) {
    last = Math.max(last, model.rel(t.finished) ?? 0, model.rel(t.started) ?? 0);
  }
  if (live) last = Math.max(last, now);
  const lanes = [];
  const bars = [];
  for (const purpose of ["planner", "joiner", "model"]) {
    const mine = calls.filter((c) => c.purpose === purpose);
    if (mine.length) modelBars(mine, purpose, lanes, bars);
  }
  const ran = model.order.filter((t) => t.started !== null);
  const spans = ran.map((t) => [
    model.rel(t.started),
    t.finished !== null ? model.rel(t.finished) : last,
  ]);
  const slots = assignLanes(spans);
  const first = lanes.length;
  const count = slots.length ? Math.max(...slots) + 1 : 0;
  for (let n = 0; n < count; n++) lanes.push(`slot ${n + 1}`);
  ran.forEach((t, i) => {
    const state = t.finished !== null ? t.status : "running";
    bars.push(taskBar(model, t, state, spans[i][0], spans[i][1], first + slots[i]));
  });
  const never = model.order.filter((t) => t.started === null && (!live || t.finished !== null));
  if (never.length) {
    lanes.push(NOT_RUN);
    for (const t of never) {
      const at = t.finished !== null ? model.rel(t.finished) : 0;
      bars.push(taskBar(model, t, t.status, at, at, lanes.length - 1));
    }
  }
  return { lanes, bars, duration: last };
}

// -- drawing ---------------------------------------------------------------------------------

function layout(duration, width, rows) {
  const row = Math.min(ROW, BODY / rows);
  const right = width - PAD;
  const span = duration > 0 ? duration : 1;
  return {
    duration,
    width,
    rows,
    row,
    right,
    bar: row >= 12 ? row - 6 : row * 0.8,
    x: (s) => GUTTER + ((right - GUTTER) * Math.max(0, s)) / span,
  };
}

function tickStep(duration) {
  if (duration <= 0) return 1;
  const raw = duration / 8;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= raw);
}

function tickLabel(value, step) {
  if (step < 1) return `${Math.round(value * 1000)} ms`;
  return `${Number(value.toPrecision(6))} s`;
}

/** A round length (1, 2 or 5 times a power of ten) past `value`: the axis of a live run. */
export function roundUp(value) {
  const v = Math.max(value, 0.01) * 1.05;
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= v);
}

function f(value) {
  return String(Number(value.toFixed(2)));
}

/** Draws timelines into one `<svg>`, reusing its elements from one drawing to the next. */
export class TimelineView {
  constructor(root) {
    this.root = root;
    this.back = svg("g", { class: "lanes" });
    this.axis = svg("g", { class: "axis" });
    this.barsGroup = svg("g", { class: "bars" });
    this.marksGroup = svg("g", { class: "retries", "pointer-events": "none" });
    this.labelsGroup = svg("g", { class: "labels", "pointer-events": "none" });
    this.legend = svg("g", { class: "legend" });
    this.root.replaceChildren(
      svg("rect", { class: "paper", fill: "#ffffff" }),
      this.back,
      this.axis,
      this.barsGroup,
      this.marksGroup,
      this.labelsGroup,
      this.legend,
    );
    this.bars = new Map(); // key -> {rect, label, marks, describe, keys of what is drawn}
    this.owner = new WeakMap(); // rect -> its entry in `bars`
    this.backKey = "";
    this.axisKey = "";
    this.legendKey = "";
    this.sizeKey = "";
    // A bar's hover text is made when the pointer first reaches it.
    root.addEventListener("mouseover", (event) => {
      const drawn = this.owner.get(event.target);
      if (drawn === undefined) return;
      const text = drawn.describe();
      let title = drawn.rect.firstChild;
      if (!title) drawn.rect.append((title = svg("title")));
      if (title.textContent !== text) title.textContent = text;
    });
  }

  /** Draw `timeline` with its time axis `duration` seconds long. */
  draw(timeline, duration, width = WIDTH) {
    const lay = layout(duration, width, Math.max(1, timeline.lanes.length));
    const height = Math.ceil(TOP + lay.rows * lay.row + LEGEND);
    const sizeKey = `${width}x${height}`;
    if (sizeKey !== this.sizeKey) {
      this.sizeKey = sizeKey;
      setAttrs(this.root, { viewBox: `0 0 ${width} ${height}`, width, height });
      setAttrs(this.root.firstChild, { width, height });
    }
    this.drawLanes(timeline.lanes, lay);
    this.drawAxis(lay);
    const seen = new Set();
    let fresh = null;
    for (const bar of timeline.bars) {
      seen.add(bar.key);
      let drawn = this.bars.get(bar.key);
      if (drawn === undefined) {
        drawn = this.makeBar(bar);
        (fresh ??= document.createDocumentFragment()).append(drawn.rect);
      }
      this.drawBar(drawn, bar, lay);
    }
    if (fresh) this.barsGroup.append(fresh);
    for (const [key, drawn] of this.bars) {
      if (!seen.has(key)) {
        drawn.rect.remove();
        drawn.label?.remove();
        drawn.marks?.remove();
        this.bars.delete(key);
      }
    }
    this.drawLegend(timeline, height);
  }

  drawLanes(lanes, lay) {
    const key = `${lay.row}|${lay.right}|${lanes.join("\u0000")}`;
    if (key === this.backKey) return;
    this.backKey = key;
    const every = Math.ceil(14 / lay.row);
    const parts = [];
    lanes.forEach((name, row) => {
      const y = TOP + row * lay.row;
      if (row % 2 && lay.row >= 6) {
        parts.push(
          svg("rect", {
            x: GUTTER,
            y: f(y),
            width: f(lay.right - GUTTER),
            height: f(lay.row),
            fill: "#000000",
            "fill-opacity": "0.03",
          }),
        );
      }
      if (row % every === 0 || name === NOT_RUN || name === "planner" || name === "joiner") {
        parts.push(
          svg(
            "text",
            { x: GUTTER - 8, y: f(y + lay.row / 2 + 4), "text-anchor": "end", fill: "#455a64" },
            name,
          ),
        );
      }
    });
    this.back.replaceChildren(...parts);
  }

  drawAxis(lay) {
    const key = `${lay.duration}|${lay.rows}|${lay.row}|${lay.right}`;
    if (key === this.axisKey) return;
    this.axisKey = key;
    const step = tickStep(lay.duration);
    const bottom = f(TOP + lay.rows * lay.row);
    const parts = [svg("line", { x1: GUTTER, y1: TOP, x2: lay.right, y2: TOP, stroke: "#90a4ae" })];
    for (let n = 0; n * step <= lay.duration * (1 + 1e-9) && n <= 50; n++) {
      const x = f(lay.x(n * step));
      parts.push(svg("line", { x1: x, y1: TOP - 4, x2: x, y2: bottom, stroke: "#eceff1" }));
      parts.push(
        svg(
          "text",
          { x, y: TOP - 8, "text-anchor": "middle", fill: "#607d8b" },
          tickLabel(n * step, step),
        ),
      );
    }
    this.axis.replaceChildren(...parts);
  }

  makeBar(bar) {
    const rect = svg("rect", { class: `bar ${bar.kind}` });
    if (bar.taskId !== null) rect.dataset.task = bar.taskId;
    const drawn = { rect, label: null, marks: null, describe: bar.detail, key: "", labelKey: "", marksKey: "" };
    this.bars.set(bar.key, drawn);
    this.owner.set(rect, drawn);
    return drawn;
  }

  drawBar(drawn, bar, lay) {
    const x = lay.x(bar.start);
    let w = lay.x(bar.end) - x;
    w = w > 4 ? w - 1 : Math.max(w, 2); // a hairline between bars that touch
    const high = lay.bar;
    const y = TOP + bar.lane * lay.row + (lay.row - high) / 2;
    drawn.describe = bar.detail;
    const colour = COLOURS[bar.state] ?? OTHER_COLOUR;
    const geometry = `${f(x)}|${f(y)}|${f(w)}|${f(high)}|${colour}|${bar.state}|${bar.lane}`;
    if (geometry !== drawn.key) {
      drawn.key = geometry;
      setAttrs(drawn.rect, {
        x: f(x),
        y: f(y),
        width: f(w),
        height: f(high),
        rx: high >= 6 ? 2 : 0,
        fill: colour,
      });
      if (bar.taskId !== null) {
        drawn.rect.dataset.state = bar.state;
        drawn.rect.dataset.lane = String(bar.lane);
      }
    }
    this.drawMarks(drawn, bar, lay, y, high);
    const fits = high >= 14 && bar.label.length * CHAR + 6 <= w;
    const labelKey = fits ? `${f(x + 4)}|${f(y + high - 4)}|${bar.label}` : "";
    if (labelKey !== drawn.labelKey) {
      drawn.labelKey = labelKey;
      drawn.label?.remove();
      drawn.label = fits
        ? svg("text", { x: f(x + 4), y: f(y + high - 4), fill: "#ffffff" }, bar.label)
        : null;
      if (drawn.label) this.labelsGroup.append(drawn.label);
    }
  }

  drawMarks(drawn, bar, lay, y, high) {
    const key = bar.retries.length ? `${bar.retries.map((at) => f(lay.x(at))).join(",")}|${f(y)}` : "";
    if (key === drawn.marksKey) return;
    drawn.marksKey = key;
    drawn.marks?.remove();
    drawn.marks = null;
    if (!key) return;
    drawn.marks = svg("g");
    for (const at of bar.retries) {
      const rx = f(lay.x(at));
      drawn.marks.append(
        svg("line", {
          x1: rx,
          y1: f(y),
          x2: rx,
          y2: f(y + high),
          stroke: "#263238",
          "stroke-width": "1.5",
        }),
      );
    }
    this.marksGroup.append(drawn.marks);
  }

  drawLegend(timeline, height) {
    const shown = [...new Set(timeline.bars.map((b) => b.state))];
    const key = `${height}|${shown.join(",")}`;
    if (key === this.legendKey) return;
    this.legendKey = key;
    const y = height - LEGEND + 10;
    let x = GUTTER;
    const parts = [];
    for (const state of shown) {
      parts.push(
        svg("rect", {
          x: f(x),
          y,
          width: 12,
          height: 12,
          rx: 2,
          fill: COLOURS[state] ?? OTHER_COLOUR,
        }),
      );
      parts.push(svg("text", { x: f(x + 16), y: y + 10, fill: "#455a64" }, state));
      x += 28 + state.length * CHAR;
    }
    this.legend.replaceChildren(...parts);
  }
}
