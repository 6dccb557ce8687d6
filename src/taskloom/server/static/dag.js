// The run's plan as a graph: a node per task, coloured by its state; an edge per dependency.
//
// Layout is layered: a task's column is its depth (one more than its deepest dependency), and
// within a column tasks are ordered by where their dependencies sit, so edges cross little.
// A tall column wraps into several. Nodes are made once and then only recoloured; the layout
// is recomputed (all of it: it is linear in the graph) only when the graph changed, and at
// most a few times a second, so a plan of thousands of tasks stays smooth while it grows.

import { COLOURS, OTHER_COLOUR, callText } from "./timeline.js";
import { svg, setAttrs } from "./dom.js";

// gapX: between layers; wrap: between the columns of one wrapped layer; rows: before it wraps.
const FULL = { w: 132, h: 26, gapX: 44, wrap: 16, gapY: 10, rows: 24, label: true };
const COMPACT = { w: 14, h: 14, gapX: 14, wrap: 5, gapY: 5, rows: 40, label: false };
const COMPACT_PAST = 120; // tasks past which nodes become small squares
const MARGIN = 12;

/** Depth of each task: 0 without dependencies, else one more than its deepest dependency. */
export function depths(order, tasks) {
  const depth = new Map();
  const visiting = new Set();
  const of = (t) => {
    const known = depth.get(t.id);
    if (known !== undefined) return known;
    // Deep chains are walked with an explicit stack, not recursion.
    const stack = [t];
    while (stack.length) {
      const top = stack[stack.length - 1];
      if (depth.has(top.id)) {
        stack.pop();
        continue;
      }
      visiting.add(top.id);
      let pending = false;
      let deepest = -1;
      for (const id of top.deps) {
        const dep = tasks.get(id);
        if (dep === undefined || (visiting.has(id) && !depth.has(id))) continue; // a cycle: ignore
        const d = depth.get(id);
        if (d === undefined) {
          stack.push(dep);
          pending = true;
        } else {
          deepest = Math.max(deepest, d);
        }
      }
      if (!pending) {
        depth.set(top.id, deepest + 1);
        visiting.delete(top.id);
        stack.pop();
      }
    }
    return depth.get(t.id);
  };
  for (const t of order) of(t);
  return depth;
}

function sizeFor(count) {
  return count > COMPACT_PAST ? COMPACT : FULL;
}

/** Where each node goes: {positions: Map id -> {x, y}, width, height, size}. */
export function layout(order, tasks) {
  const size = sizeFor(order.length);
  const depth = depths(order, tasks);
  const layers = [];
  for (const t of order) {
    const d = depth.get(t.id) ?? 0;
    (layers[d] ??= []).push(t);
  }
  const rank = new Map(); // a task's position in its layer, for its children's order
  const positions = new Map();
  let x = MARGIN;
  let height = 0;
  for (const layer of layers) {
    if (!layer) continue;
    const keyed = layer.map((t) => {
      let sum = 0;
      let n = 0;
      for (const id of t.deps) {
        const r = rank.get(id);
        if (r !== undefined) {
          sum += r;
          n += 1;
        }
      }
      return { t, key: n ? sum / n : t.index };
    });
    keyed.sort((a, b) => a.key - b.key || a.t.index - b.t.index);
    const columns = Math.ceil(keyed.length / size.rows);
    const perColumn = Math.ceil(keyed.length / columns);
    keyed.forEach(({ t }, i) => {
      rank.set(t.id, (i / Math.max(1, keyed.length - 1)) * 1000);
      const column = Math.floor(i / perColumn);
      const row = i % perColumn;
      positions.set(t.id, {
        x: x + column * (size.w + size.wrap),
        y: MARGIN + row * (size.h + size.gapY),
      });
    });
    height = Math.max(height, perColumn * (size.h + size.gapY));
    x += columns * (size.w + size.wrap) - size.wrap + size.gapX;
  }
  return { positions, width: x - size.gapX + MARGIN * 2, height: height + MARGIN * 2, size };
}

function nodeLabel(t, size) {
  const text = `${t.id} ${t.tool || "…"}`;
  const fits = Math.floor((size.w - 10) / 6.6);
  return text.length <= fits ? text : `${text.slice(0, fits - 1)}…`;
}

function nodeTitle(t) {
  let title = `${callText(t)}\n${t.status}`;
  if (t.attempts > 1) title += `, ${t.attempts} attempts`;
  if (t.error) title += `\n${t.error.length > 300 ? `${t.error.slice(0, 300)}…` : t.error}`;
  return title;
}

/** Draws a run's graph into one `<svg>`; `update()` each frame with the tasks that changed. */
export class DagView {
  constructor(root) {
    this.root = root;
    this.edges = svg("path", { class: "edges", fill: "none", stroke: "#90a4ae" });
    this.nodesGroup = svg("g", { class: "nodes" });
    root.replaceChildren(this.edges, this.nodesGroup);
    this.nodes = new Map(); // id -> {group, rect, label, state, labelText, pos}
    this.size = FULL;
    this.selected = null;
    this.tasks = new Map();
    // A node's hover text is made when the pointer reaches it.
    root.addEventListener("mouseover", (event) => {
      const group = event.target.closest?.(".node");
      const t = group && this.tasks.get(group.dataset.task);
      if (!t) return;
      let title = group.querySelector("title");
      if (!title) group.append((title = svg("title")));
      const text = nodeTitle(t);
      if (title.textContent !== text) title.textContent = text;
    });
  }

  /**
   * Make nodes for new tasks and recolour changed ones (cheap: call every frame).
   * @param {Iterable} changed the tasks that changed.
   * @param {Map} tasks every task of the run, by id.
   */
  update(changed, tasks) {
    this.tasks = tasks;
    const size = sizeFor(tasks.size);
    if (size !== this.size) {
      this.size = size;
      for (const [id, node] of this.nodes) {
        this.shape(node);
        const t = tasks.get(id);
        if (t) this.paint(node, t);
      }
    }
    let fresh = null;
    for (const t of changed) {
      let node = this.nodes.get(t.id);
      if (node === undefined) {
        node = this.makeNode(t);
        (fresh ??= document.createDocumentFragment()).append(node.group);
      }
      this.paint(node, t);
    }
    if (fresh) this.nodesGroup.append(fresh);
  }

  makeNode(t) {
    const rect = svg("rect");
    const group = svg("g", { class: "node unplaced", "data-task": t.id }, rect);
    const node = { group, rect, label: null, state: "", labelText: "", pos: null };
    this.nodes.set(t.id, node);
    this.shape(node);
    return node;
  }

  shape(node) {
    setAttrs(node.rect, { width: this.size.w, height: this.size.h, rx: this.size.label ? 4 : 2 });
    if (this.size.label && !node.label) {
      node.label = svg("text", { x: 6, y: this.size.h / 2 + 4, "pointer-events": "none" });
      node.group.append(node.label);
      node.labelText = "";
    } else if (!this.size.label && node.label) {
      node.label.remove();
      node.label = null;
    }
  }

  paint(node, t) {
    if (node.state !== t.status) {
      node.state = t.status;
      node.group.setAttribute("data-state", t.status);
      node.rect.setAttribute("fill", COLOURS[t.status] ?? OTHER_COLOUR);
    }
    if (node.label) {
      const text = nodeLabel(t, this.size);
      if (text !== node.labelText) {
        node.labelText = text;
        node.label.textContent = text;
      }
    }
  }

  /** Place every node and redraw the edges (when the graph changed). */
  arrange(order, tasks) {
    const { positions, width, height, size } = layout(order, tasks);
    setAttrs(this.root, { width: Math.max(width, 40), height: Math.max(height, 40) });
    for (const [id, pos] of positions) {
      const node = this.nodes.get(id);
      if (!node) continue;
      if (!node.pos || node.pos.x !== pos.x || node.pos.y !== pos.y) {
        node.group.setAttribute("transform", `translate(${pos.x},${pos.y})`);
        if (!node.pos) node.group.classList.remove("unplaced");
        node.pos = pos;
      }
    }
    const w = size.w;
    const h = size.h;
    const path = [];
    for (const t of order) {
      const to = positions.get(t.id);
      if (!to) continue;
      for (const id of t.deps) {
        const from = positions.get(id);
        if (!from) continue;
        const x1 = from.x + w;
        const y1 = from.y + h / 2;
        const x2 = to.x;
        const y2 = to.y + h / 2;
        const bend = Math.max(12, (x2 - x1) / 2);
        path.push(`M${x1},${y1}C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`);
      }
    }
    setAttrs(this.edges, { d: path.join(""), "stroke-opacity": size.label ? 1 : 0.35 });
  }

  /** Mark one task's node as the one shown in detail (or none). */
  select(id) {
    if (this.selected) this.nodes.get(this.selected)?.group.classList.remove("selected");
    this.selected = id;
    if (id) this.nodes.get(id)?.group.classList.add("selected");
  }
}
