// The CPR check page. Talks only to this server: GET /health, POST /jobs, GET /jobs/{id}.
// Everything shown that came from a user or the server goes in through textContent, never
// innerHTML, so a file name cannot inject markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 400;
const POLL_LIMIT_MS = 30 * 60 * 1000; // give up polling after 30 minutes
const chosen = {1: null, 2: null, 3: null, 4: null}; // view -> File
let limits = {max_files: 4, max_upload_mb: 200};
let info = {};
let lastResult = null;

function $(id) { return document.getElementById(id); }

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function showMessage(text) {
  const m = $("message");
  m.textContent = text;
  m.hidden = !text;
}

function mb(bytes) {
  if (bytes < 1048576) return Math.max(1, Math.round(bytes / 1024)) + " KB";
  return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB";
}

// --- choosing files ---------------------------------------------------------------------

function setFile(view, file) {
  chosen[view] = file;
  const slot = $("slot" + view);
  slot.classList.toggle("filled", !!file);
  $("view" + view + "-name").textContent = file
    ? file.name + " (" + mb(file.size) + ")"
    : "No video yet: click or drop one here";
  slot.querySelector(".remove").hidden = !file;
  if (!file) $("view" + view + "-input").value = "";
  refreshButton();
}

function refreshButton() {
  $("analyse").disabled = !Object.values(chosen).some(Boolean);
}

// A problem with a file the page can see before sending it, or "" when it looks fine.
function fileProblem(file) {
  if (file.size === 0) return "The file " + file.name + " is empty.";
  if (file.size > limits.max_upload_mb * 1048576) {
    return "The file " + file.name + " is " + mb(file.size) + "; the limit is " +
      limits.max_upload_mb + " MB per video.";
  }
  return "";
}

// Put dropped or chosen files into the slots: the first into `startView`, the rest into the
// next empty slots.
function placeFiles(files, startView) {
  showMessage("");
  files = Array.from(files);
  if (files.length === 0) return;
  const views = [1, 2, 3, 4].slice(0, limits.max_files);
  const free = [startView, ...views.filter(v => v !== startView && !chosen[v])];
  if (files.length > free.length) {
    showMessage("Too many files: at most " + limits.max_files +
      " videos (one per camera) can be checked together.");
    return;
  }
  for (const f of files) {
    const p = fileProblem(f);
    if (p) { showMessage(p); return; }
  }
  files.forEach((f, i) => setFile(free[i], f));
}

function setUpSlots() {
  for (const v of [1, 2, 3, 4]) {
    const slot = $("slot" + v);
    if (v > limits.max_files) { slot.hidden = true; continue; }
    const input = $("view" + v + "-input");
    input.addEventListener("change", () => placeFiles(input.files, v));
    slot.querySelector(".remove").addEventListener("click", () => setFile(v, null));
    slot.addEventListener("dragover", e => { e.preventDefault(); slot.classList.add("dragover"); });
    slot.addEventListener("dragleave", () => slot.classList.remove("dragover"));
    slot.addEventListener("drop", e => {
      e.preventDefault(); e.stopPropagation();
      slot.classList.remove("dragover");
      placeFiles(e.dataTransfer.files, v);
    });
  }
  // A drop anywhere else on the page fills the first empty slots.
  document.addEventListener("dragover", e => e.preventDefault());
  document.addEventListener("drop", e => {
    e.preventDefault();
    const first = [1, 2, 3, 4].find(v => !chosen[v] && v <= limits.max_files) || 1;
    placeFiles(e.dataTransfer.files, first);
  });
}

// --- sending and following progress ----------------------------------------------------

async function analyse() {
  showMessage("");
  const form = new FormData();
  for (const v of [1, 2, 3, 4]) {
    if (!chosen[v]) continue;
    form.append("files", chosen[v], chosen[v].name);
    form.append("views", String(v));
  }
  $("analyse").disabled = true;
  $("result").hidden = true;
  renderStages([{label: "Sending the videos", state: "active"}]);
  $("progress").hidden = false;
  let resp;
  try {
    resp = await fetch("/jobs", {method: "POST", body: form});
  } catch (err) {
    return failed("The server could not be reached. Is it still running?");
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) return failed(body.detail || ("The server refused the videos (" + resp.status + ")."));
  follow(body.id, Date.now());
}

function failed(text) {
  $("progress").hidden = true;
  showMessage(text);
  refreshButton();
}

async function follow(id, started) {
  if (Date.now() - started > POLL_LIMIT_MS) return failed("The check took too long; try again.");
  let job;
  try {
    const r = await fetch("/jobs/" + id);
    job = await r.json();
    if (!r.ok) return failed(job.detail || "The check was lost; try again.");
  } catch (err) {
    return failed("The server could not be reached. Is it still running?");
  }
  renderStages(job.stages);
  if (job.status === "done") {
    $("progress").hidden = true;
    renderResult(job.result);
    refreshButton();
  } else if (job.status === "failed") {
    showMessage(job.error || "The check failed.");
    refreshButton();
  } else {
    setTimeout(() => follow(id, started), POLL_MS);
  }
}

function renderStages(stages) {
  const ol = $("stages");
  ol.replaceChildren(...stages.map(s => {
    const li = el("li", {class: s.state}, s.label);
    if (s.state === "active") li.append(" \u2026");
    return li;
  }));
}

// --- the result ------------------------------------------------------------------------

// How sure, in words. Probabilities read as percentages; prompt similarities have no fixed
// scale, so the page says how far above the reporting level the score is, relative to the
// spread of all 14 scores, and gives the numbers in brackets.
function howSure(err, kind, res) {
  if (kind === "probability") return Math.round(100 * err.score) + "% sure";
  const all = Object.values(res.scores);
  const spread = Math.max(...all) - Math.min(...all) || 1;
  if (err.threshold === null || err.threshold === undefined) {
    return "Stands out from the other mistakes (match " + err.score.toFixed(3) + ")";
  }
  const words = (err.score - err.threshold) / spread > 0.15 ? "Clearly above" : "Just above";
  return words + " the level needed to report it (match " + err.score.toFixed(3) +
    ", needed " + err.threshold.toFixed(3) + ")";
}

function renderResult(res) {
  lastResult = res;
  const kind = res.head === "bce" ? "probability" : "similarity";
  const verdict = $("verdict");
  const list = $("errors");
  list.replaceChildren();
  const note = $("verdict-note");
  note.hidden = true;
  if (res.looks_correct) {
    verdict.textContent = "\u2714 The compressions look correct";
    verdict.className = "ok";
    if (!res.correct_detected) {
      note.textContent = "The assistant found no mistake, but it is not very sure about this " +
        "session either. Adding more camera views can help.";
      note.hidden = false;
    }
  } else {
    const n = res.errors.length;
    verdict.textContent = n === 1 ? "1 thing to correct" : n + " things to correct";
    verdict.className = "errors-found";
    note.textContent = "Most certain first.";
    note.hidden = false;
    for (const e of res.errors) {
      const li = el("li", {"data-class-id": e.id});
      li.append(el("span", {class: "name"}, e.name));
      if (e.description) li.append(" \u2014 " + e.description);
      const todo = el("span", {class: "todo"});
      todo.append(el("strong", {}, "What to do: "), capitalise(e.advice) + ".");
      li.append(todo, el("span", {class: "how-sure"}, howSure(e, kind, res)));
      list.append(li);
    }
  }
  // Above the mark but left out: they cannot happen together with a reported mistake.
  const left = $("left-out");
  left.replaceChildren(...(res.suppressed || []).map(d =>
    el("li", {}, d.name + ": not reported, because " +
      (d.reason.startsWith("excludes") ? "it " : "") + d.reason + ".")));
  $("left-out-box").hidden = !(res.suppressed || []).length;
  const warnings = $("warnings");
  warnings.replaceChildren(...(res.notes || []).map(w => el("p", {class: "warning"}, "Note: " + w)));
  renderChart(res, kind);
  renderFrames(res);
  $("result").hidden = false;
  verdict.scrollIntoView({behavior: "smooth", block: "start"});
}

function capitalise(s) { return s ? s[0].toUpperCase() + s.slice(1) : s; }

function renderFrames(res) {
  const box = $("frames");
  box.replaceChildren();
  const views = res.views || [];
  views.forEach((v, i) => {
    const urls = (res.frames || {})[String(v)] || [];
    const div = el("div", {class: "view-frames"});
    const name = (res.files || [])[i];
    div.append(el("h4", {}, "Camera " + v + (name ? " \u2014 " + name : "")));
    const strip = el("div", {class: "strip"});
    urls.forEach((u, k) => strip.append(el("img", {src: u, alt: "Camera " + v + ", moment " + (k + 1)})));
    div.append(strip);
    box.append(div);
  });
}

// A horizontal bar per class: its score; reported ones in colour; a black tick marks the level
// from which a class is reported.
function renderChart(res, kind) {
  const names = Object.keys(res.scores);
  const scores = names.map(n => res.scores[n]);
  const thr = names.map(n => (res.thresholds || {})[n]);
  const reported = new Set(res.errors.map(e => e.name));
  const leftOut = new Set((res.suppressed || []).map(d => d.name));
  let lo = 0, hi = 1;
  if (kind !== "probability") {
    const vals = scores.concat(thr.filter(t => t !== null && t !== undefined));
    lo = Math.min(...vals);
    hi = Math.max(...vals);
    const pad = 0.05 * (hi - lo);  // the lowest bar still shows
    lo -= pad;
    if (hi - lo < 1e-6) hi = lo + 1;
  }
  $("chart-help").textContent = kind === "probability"
    ? "Each bar is how sure the assistant is (0 to 100%). Orange bars are the mistakes it " +
      "reports; the black mark is the level a bar must reach to be reported. Pale orange bars " +
      "passed the mark but were left out (see above). The green bar is for \u201cno mistake\u201d."
    : "Each bar is how well the video matches a description of that mistake (longer is a " +
      "better match). Orange bars are the mistakes it reports; the black mark is the level a bar " +
      "must reach to be reported. Pale orange bars passed the mark but were left out (see above). " +
      "The green bar is for \u201cno mistake\u201d.";
  const rowH = 30, labelW = 250, barW = 520, valW = 90, top = 8;
  const W = labelW + barW + valW, H = top + rowH * names.length + 30;
  const s = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "Bar chart of the score of each possible mistake"});
  const x = v => labelW + barW * (v - lo) / (hi - lo);
  names.forEach((n, i) => {
    const y = top + i * rowH;
    const isCorrect = i === 0;
    const fill = isCorrect ? "#1a7f37"
      : reported.has(n) ? "#d9730d"
      : leftOut.has(n) ? "#f2c089" : "#9aa6b2";
    s.append(svg("text", {x: labelW - 10, y: y + rowH * 0.65, "text-anchor": "end",
      "font-size": 16, fill: "#1b1f24", "font-weight": reported.has(n) ? 700 : 400},
      isCorrect ? "No mistake (" + n + ")" : n));
    // Probabilities grow from 0; similarities from the lowest score, so longer is always more.
    const x0 = x(lo), x1 = x(scores[i]);
    s.append(svg("rect", {x: Math.min(x0, x1), y: y + 5, width: Math.max(1, Math.abs(x1 - x0)),
      height: rowH - 10, rx: 3, fill: fill, "data-class": n}));
    if (thr[i] !== null && thr[i] !== undefined && isFinite(thr[i])) {
      const tx = x(Math.min(hi, Math.max(lo, thr[i])));
      s.append(svg("line", {x1: tx, x2: tx, y1: y + 2, y2: y + rowH - 2, stroke: "#000",
        "stroke-width": 3}));
    }
    const label = kind === "probability" ? Math.round(100 * scores[i]) + "%" : scores[i].toFixed(3);
    s.append(svg("text", {x: labelW + barW + 8, y: y + rowH * 0.65, "font-size": 15,
      fill: "#4a5561"}, label));
  });
  const axisY = top + rowH * names.length + 4;
  s.append(svg("line", {x1: labelW, x2: labelW + barW, y1: axisY, y2: axisY, stroke: "#4a5561"}));
  const ends = kind === "probability" ? ["0%", "100%"] : ["weaker match", "stronger match"];
  s.append(svg("text", {x: labelW, y: axisY + 20, "font-size": 14, fill: "#4a5561"}, ends[0]));
  s.append(svg("text", {x: labelW + barW, y: axisY + 20, "font-size": 14, "text-anchor": "end",
    fill: "#4a5561"}, ends[1]));
  $("chart").replaceChildren(s);
}

function download() {
  if (!lastResult) return;
  const {frames, ...rest} = lastResult; // the pictures stay on the page; the file keeps the findings
  const blob = new Blob([JSON.stringify(rest, null, 2)], {type: "application/json"});
  const a = el("a", {href: URL.createObjectURL(blob), download: "cpr-check-result.json"});
  document.body.append(a);
  a.click();
  a.remove();
}

function reset() {
  for (const v of [1, 2, 3, 4]) setFile(v, null);
  $("result").hidden = true;
  $("progress").hidden = true;
  showMessage("");
  window.scrollTo({top: 0, behavior: "smooth"});
}

async function start() {
  setUpSlots();
  $("analyse").addEventListener("click", analyse);
  $("download").addEventListener("click", download);
  $("again").addEventListener("click", reset);
  try {
    const r = await fetch("/health");
    info = await r.json();
    limits = {max_files: info.max_files, max_upload_mb: info.max_upload_mb};
    $("max-files").textContent = String(info.max_files);
    $("max-size").textContent = info.max_upload_mb + " MB";
    if (info.max_duration_s) $("max-length").textContent = info.max_duration_s + " seconds";
    $("model-info").textContent = "Model: " + info.run + " (" + info.model + ")";
    for (const v of [1, 2, 3, 4]) $("slot" + v).hidden = v > limits.max_files;
  } catch (err) {
    showMessage("The server could not be reached. Is it still running?");
  }
  document.body.dataset.ready = "1";
}

start();
