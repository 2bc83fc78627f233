// The map page: every document of a release as a point (regl-scatterplot, WebGL), coloured by a
// field; hover for the title, click for the document and its nearest neighbours (from the search
// API, not from 2D distance), a search box that highlights results, and a second release beside
// the first to see how a new model reorganises the collection. The map's regions are labelled with
// their topics (keywords per cluster, fitted with the map): coarse clusters zoomed out, finer ones
// as you zoom in.
import { createScatterplot } from "./vendor/regl-scatterplot.js";

const PAGE = 250000; // points per request
// the data's [-1, 1] square is drawn at this share of the canvas's shorter side, so points (and
// the larger selected ones) on the edge are whole, not half clipped
const FIT = 0.94;
// a finer level of labels appears once the zoom shows about as many clusters as the first level
// does zoomed out: level i (k_i clusters) from zoom sqrt(k_i / k_0), a little early
const EARLY = 1.25;
// 40 categorical colours (Tableau 20, then its light variants' darker neighbours)
const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
  "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5", "#393b79", "#637939", "#8c6d31", "#843c39",
  "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194", "#6b6ecf", "#b5cf6b",
  "#e7ba52", "#d6616b", "#ce6dbd", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c", "#de9ed6",
  "#555555",
];

const $ = (id) => document.getElementById(id);
const state = { key: localStorage.getItem("embedlake.key") || "", views: [], docs: new Map() };

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  let body = options.body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { method: options.method || "GET", headers, body });
  if (response.status === 401) {
    await askKey();
    return api(path, options);
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ detail: response.statusText }));
    throw new Error(problem.detail || response.statusText);
  }
  return response;
}

function askKey() {
  const dialog = $("key-dialog");
  $("key-input").value = state.key;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      state.key = $("key-input").value.trim();
      localStorage.setItem("embedlake.key", state.key);
      resolve();
    }, { once: true });
  });
}

function status(text) {
  $("status").textContent = text;
}

async function documentOf(id) {
  if (!state.docs.has(id)) {
    state.docs.set(id, api(`/v1/documents/${encodeURIComponent(id)}`).then((r) => r.json()));
  }
  return state.docs.get(id);
}

class MapView {
  constructor(parent) {
    this.el = document.createElement("section");
    this.el.className = "map";
    this.heading = document.createElement("h2");
    this.canvas = document.createElement("canvas");
    this.legend = document.createElement("div");
    this.legend.className = "legend";
    this.labels = document.createElement("div");
    this.labels.className = "topics";
    this.el.append(this.canvas, this.labels, this.heading, this.legend);
    parent.append(this.el);
    this.ids = [];
    this.positions = null; // id → point, made when first asked (a million ids take ~0.1 s)
    this.topics = { levels: [] };
    this.topicEls = new Map(); // per level, its labels' elements (made once, then moved)
    this.plot = createScatterplot({
      canvas: this.canvas,
      width: "auto",
      height: "auto",
      pointSize: 3,
      pointSizeSelected: 7,
      pointOutlineWidth: 2,
      pointColor: PALETTE,
      pointColorActive: "#000000",
      colorBy: "valueA",
      // where points pile up (a million of them on one screen) each is drawn fainter, by the
      // density of the points in view, so dense regions read as density, not as a solid blot
      opacityBy: "density",
      lassoOnLongPress: true,
    });
    this.plot.subscribe("pointOver", (i) => hover(this, i));
    this.plot.subscribe("pointOut", () => ($("tooltip").hidden = true));
    this.plot.subscribe("view", () => this.scheduleLabels());
    this.plot.subscribe("select", ({ points }) => {
      if (points.length === 1 && !this.quiet) pick(this, this.ids[points[0]]);
    });
    this.canvas.addEventListener("mousemove", (e) => {
      const tip = $("tooltip");
      tip.style.left = `${e.clientX + 12}px`;
      tip.style.top = `${e.clientY + 12}px`;
    });
  }

  // everything the map needs is asked for at once: the first page of points and of ids (which
  // say how many there are; the other pages follow in parallel), the colours and the topics.
  // Points come as uint16 pairs and ids as lines, gzipped by the server: a million points is
  // ~4 MB of points and ~2 MB of ids on the wire
  async load(release, field) {
    this.release = release;
    this.heading.textContent = release;
    const base = `/v1/map/${encodeURIComponent(release)}`;
    const page = (offset) => api(`${base}/points?offset=${offset}&limit=${PAGE}&encoding=u16`);
    const idPage = (offset) => api(`${base}/ids?format=text&offset=${offset}&limit=${PAGE}`)
      .then((r) => r.text());
    const firstIds = idPage(0);
    const topics = api(`${base}/topics`).then((r) => r.json());
    const labels = this.labelsOf(field);
    const first = await page(0);
    const total = Number(first.headers.get("X-Total-Count"));
    const offsets = [];
    for (let offset = PAGE; offset < total; offset += PAGE) offsets.push(offset);
    const ids = Promise.all([firstIds, ...offsets.map(idPage)]);
    const pages = await Promise.all([
      first.arrayBuffer(),
      ...offsets.map((offset) => page(offset).then((r) => r.arrayBuffer())),
    ]);
    this.x = new Float32Array(total);
    this.y = new Float32Array(total);
    let i = 0;
    for (const buffer of pages) {
      const xy = new Uint16Array(buffer);
      for (let j = 0; j < xy.length; j += 2, i += 1) {
        this.x[i] = (xy[j] / 32767.5 - 1) * FIT;
        this.y[i] = (xy[j + 1] / 32767.5 - 1) * FIT;
      }
    }
    performance.mark(`map:${release}:points`); // for bench/scale.py: where a load's time goes
    this.ids = total ? (await ids).flatMap((text) => text.split("\n")) : [];
    this.positions = null;
    this.topics = await topics;
    this.topicEls = new Map();
    const coloured = await labels;
    performance.mark(`map:${release}:data`);
    await this.draw(coloured);
    performance.mark(`map:${release}:drawn`);
    this.placeLabels();
  }

  indexOf(id) {
    if (!this.positions) {
      this.positions = new Map();
      for (const [n, known] of this.ids.entries()) this.positions.set(known, n);
    }
    return this.positions.get(id);
  }

  zoom() {
    return 1 / this.plot.get("cameraDistance");
  }

  // the level of labels for the current zoom: coarse zoomed out, finer zoomed in
  level() {
    const { levels } = this.topics;
    if (!levels.length) return -1;
    let chosen = 0;
    for (const [i, level] of levels.entries()) {
      if (Math.sqrt(level.clusters / levels[0].clusters) <= this.zoom() * EARLY) chosen = i;
    }
    return chosen;
  }

  scheduleLabels() {
    if (this.labelFrame) return;
    this.labelFrame = requestAnimationFrame(() => {
      this.labelFrame = null;
      this.placeLabels();
    });
  }

  // each label at its cluster's central point; largest clusters first, and a label that would
  // overlap one already placed (or leave the canvas) is hidden
  placeLabels() {
    const level = this.level();
    this.labels.dataset.level = String(level);
    if (level < 0 || !this.ids.length) {
      this.labels.replaceChildren();
      return;
    }
    if (!this.topicEls.has(level)) {
      this.topicEls.set(level, this.topics.levels[level].topics.map((topic) => {
        const el = document.createElement("div");
        el.className = level === 0 ? "topic coarse" : "topic";
        el.textContent = topic.keywords.join(" · ");
        el.dataset.id = topic.id;
        el.dataset.point = String(topic.point); // where it sits, in the order of the ids
        return el;
      }));
    }
    const els = this.topicEls.get(level);
    if (this.labels.firstChild !== els[0]) this.labels.replaceChildren(...els);
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    const sizes = els.map((el) => [el.offsetWidth, el.offsetHeight]); // all reads, then writes
    const taken = [];
    for (const [n, el] of els.entries()) {
      const i = Number(el.dataset.point);
      let at = null;
      try {
        at = Number.isInteger(i) ? this.plot.getScreenPosition(i) : null;
      } catch {
        at = null; // not drawn yet
      }
      const [w, h] = sizes[n];
      const box = at && [at[0] - w / 2, at[1] - h / 2, at[0] + w / 2, at[1] + h / 2];
      const fits = box && box[0] >= 0 && box[1] >= 0 && box[2] <= width && box[3] <= height;
      const free = fits && !taken.some((b) => box[0] < b[2] && b[0] < box[2] && box[1] < b[3] && b[1] < box[3]);
      el.hidden = !free;
      if (!free) continue;
      taken.push(box);
      el.style.left = `${box[0]}px`; // CSSOM, not a style="" attribute: the CSP allows it
      el.style.top = `${box[1]}px`;
    }
  }

  shownTopics() {
    return [...this.labels.querySelectorAll(".topic:not([hidden])")].map((el) => el.textContent);
  }

  labelsOf(field) {
    return api(`/v1/map/${encodeURIComponent(this.release)}/labels?field=${encodeURIComponent(field)}`)
      .then((r) => r.json());
  }

  async colour(field) {
    await this.draw(await this.labelsOf(field));
  }

  async draw(labels) {
    // a million codes: fromBase64 decodes natively; atob and a per-character copy are far slower
    const bytes = Uint8Array.fromBase64
      ? Uint8Array.fromBase64(labels.codes)
      : Uint8Array.from(atob(labels.codes), (c) => c.charCodeAt(0));
    const codes = new Uint16Array(bytes.buffer);
    await this.plot.draw({ x: this.x, y: this.y, valueA: Float32Array.from(codes) });
    this.legend.replaceChildren(...labels.categories.map((name, i) => {
      const row = document.createElement("div");
      const swatch = document.createElement("i");
      swatch.style.background = PALETTE[i % PALETTE.length]; // not a style="" attribute: the CSP forbids those
      row.append(swatch, `${name} (${labels.counts[i].toLocaleString()})`);
      return row;
    }));
  }

  highlight(ids) {
    const points = ids.map((id) => this.indexOf(id)).filter((i) => i !== undefined);
    this.quiet = true; // selecting in code is not a click
    this.plot.select(points, { preventEvent: true });
    this.quiet = false;
    return points;
  }

  selected() {
    return this.plot.get("selectedPoints").map((i) => this.ids[i]);
  }

  screenPosition(id) {
    const i = this.indexOf(id);
    if (i === undefined) return null;
    const [x, y] = this.plot.getScreenPosition(i);
    const box = this.canvas.getBoundingClientRect();
    return [box.left + x, box.top + y];
  }

  destroy() {
    this.plot.destroy();
    this.el.remove();
  }
}

async function hover(view, i) {
  const id = view.ids[i];
  const tip = $("tooltip");
  tip.dataset.id = id;
  tip.textContent = id;
  tip.hidden = false;
  const doc = await documentOf(id).catch(() => null);
  if (doc && tip.dataset.id === id) tip.textContent = doc.title || doc.text.slice(0, 100);
}

// passage: where the search matched in a long document ({start, end} in its text), marked and
// scrolled to; null for a document that is one passage
async function pick(view, id, passage = null) {
  view.highlight([id]);
  const panel = $("panel");
  panel.hidden = false;
  panel.dataset.id = id;
  const doc = await documentOf(id);
  const article = $("doc");
  article.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = doc.title || doc.id;
  const text = document.createElement("p");
  let mark = null;
  if (passage) {
    mark = document.createElement("mark");
    mark.textContent = doc.text.slice(passage.start, passage.end);
    text.append(doc.text.slice(0, passage.start), mark, doc.text.slice(passage.end));
  } else {
    text.textContent = doc.text;
  }
  const meta = document.createElement("small");
  meta.textContent = `${doc.id} · ${doc.source}`;
  article.append(title, meta, text);
  if (mark) mark.scrollIntoView({ block: "center" });
  const found = await (await api(`/v1/documents/${encodeURIComponent(id)}/neighbours?k=10&release=${encodeURIComponent(view.release)}`)).json();
  list(`Nearest neighbours in ${view.release}`, found.results, view);
}

function list(heading, hits, view) {
  $("panel").hidden = false;
  $("list-title").textContent = heading;
  $("list").replaceChildren(...hits.map((hit) => {
    const item = document.createElement("li");
    item.dataset.id = hit.id;
    item.textContent = hit.title || hit.snippet.slice(0, 80);
    const score = document.createElement("small");
    score.textContent = ` ${hit.score.toFixed(3)}`;
    item.append(score);
    if (hit.passage) {  // a long document: the passage that matched
      const where = document.createElement("div");
      where.className = "passage";
      where.textContent = hit.snippet;
      item.append(where);
    }
    item.addEventListener("click", () => pick(view, hit.id, hit.passage));
    return item;
  }));
}

async function search(event) {
  event.preventDefault();
  const query = $("query").value.trim();
  if (!query) return;
  const [view] = state.views;
  const found = await (await api("/v1/search", { method: "POST", json: { query, k: 25, release: view.release } })).json();
  const ids = found.results.map((hit) => hit.id);
  for (const v of state.views) v.highlight(ids);
  $("doc").replaceChildren();
  list(`“${query}”: ${ids.length} results`, found.results, view);
  status(`${ids.length} results highlighted`);
}

async function show() {
  document.body.dataset.state = "loading";
  const field = $("field").value;
  const wanted = [$("release").value, $("compare").value].filter(Boolean);
  while (state.views.length > wanted.length) state.views.pop().destroy();
  while (state.views.length < wanted.length) state.views.push(new MapView($("maps")));
  status("loading…");
  await Promise.all(wanted.map((release, i) => state.views[i].load(release, field)));
  status(state.views.map((v) => `${v.release}: ${v.ids.length.toLocaleString()} points`).join(" · "));
  document.body.dataset.state = "ready";
}

function options(select, values, labels) {
  for (const [i, value] of values.entries()) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = labels[i];
    select.append(option);
  }
}

async function main() {
  const index = await (await api("/v1/map")).json();
  if (!index.releases.length) {
    status("no release has a map yet: build one with `embedlake release`");
    document.body.dataset.state = "empty";
    return;
  }
  const names = index.releases.map((r) => `${r.id}${r.aliases.length ? ` (${r.aliases.join(", ")})` : ""}`);
  const ids = index.releases.map((r) => r.id);
  options($("release"), ids, names);
  options($("compare"), ids, names);
  options($("field"), index.fields, index.fields);
  $("field").value = index.default_field; // the most informative field, not merely the first
  const live = index.releases.find((r) => r.aliases.includes(index.alias));
  $("release").value = (live || index.releases[0]).id;
  for (const id of ["release", "compare"]) $(id).addEventListener("change", () => show().catch(fail));
  $("field").addEventListener("change", async () => {
    await Promise.all(state.views.map((v) => v.colour($("field").value)));
  });
  $("search").addEventListener("submit", (e) => search(e).catch(fail));
  $("close").addEventListener("click", () => ($("panel").hidden = true));
  $("key-button").addEventListener("click", () => askKey().then(show).catch(fail));
  await show();
}

function fail(error) {
  status(`error: ${error.message}`);
  document.body.dataset.state = "error";
}

// for the browser tests (and the curious): what is drawn where
window.embedlakeMap = { state, views: () => state.views };
main().catch(fail);
