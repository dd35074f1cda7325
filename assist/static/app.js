// The CPR check page. Talks only to this server: GET /health, POST /jobs, GET /jobs/{id}.
// Everything shown that came from a user or the server goes in through textContent, never
// innerHTML, so a file name cannot inject markup.
"use strict";

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

// The result's four states (evaluate/decide.py): errors, correct, not_sure, unsuitable. Where
// the model is calibrated, each class has a probability and the level ("mark") it must reach to
// be reported; otherwise the page shows the raw score and says it is one.

function pct(x) { return Math.round(100 * x) + "%"; }

function present(x) { return x !== null && x !== undefined && isFinite(x); }

// How sure, in words, for one error or candidate.
function howSure(err, res) {
  if (present(err.probability)) {
    return pct(err.probability) + " likely" +
      (present(err.mark) ? " (reported from " + pct(err.mark) + ")" : "");
  }
  if (res.head === "bce") {
    return "Score " + Math.round(100 * err.score) + " out of 100 (a ranking, not a chance: " +
      "this model's scores have not been tuned into chances)";
  }
  // Prompt similarities have no fixed scale: how far above the reporting level, relative to the
  // spread of all 14 scores, with the numbers in brackets.
  const all = Object.values(res.scores);
  const spread = Math.max(...all) - Math.min(...all) || 1;
  if (!present(err.threshold)) {
    return "Stands out from the other mistakes (match " + err.score.toFixed(3) + ")";
  }
  const gap = (err.score - err.threshold) / spread;
  const words = gap < 0 ? "Below" : gap > 0.15 ? "Clearly above" : "Just above";
  return words + " the level needed to report it (match " + err.score.toFixed(3) +
    ", needed " + err.threshold.toFixed(3) + ")";
}

// One mistake (reported, or a candidate) as a list item: name, description, what to do, how sure.
function mistakeItem(e, res, todoWord) {
  const li = el("li", {"data-class-id": e.id});
  li.append(el("span", {class: "name"}, e.name));
  if (e.description) li.append(" \u2014 " + e.description);
  const todo = el("span", {class: "todo"});
  todo.append(el("strong", {}, todoWord), capitalise(e.advice) + ".");
  li.append(todo, el("span", {class: "how-sure"}, howSure(e, res)));
  return li;
}

const HEADINGS = {
  correct: () => "\u2714 The compressions look correct",
  not_sure: () => "? Not sure about this session",
  unsuitable: res => "\u26A0 " + ((res.views || []).length > 1
    ? "These videos do not look like chest compressions"
    : "This video does not look like chest compressions"),
  errors: res => res.errors.length === 1 ? "1 thing to correct"
    : res.errors.length + " things to correct",
};

function renderResult(res) {
  lastResult = res;
  const state = HEADINGS[res.verdict] ? res.verdict
    : (res.errors.length ? "errors" : res.looks_correct ? "correct" : "not_sure");
  const verdict = $("verdict");
  verdict.textContent = HEADINGS[state](res);
  verdict.className = "verdict-" + state;
  document.body.dataset.verdict = state;
  const note = $("verdict-note");
  note.textContent = res.explanation || "";
  note.hidden = !res.explanation;
  $("errors").replaceChildren(...(state === "errors"
    ? res.errors.map(e => mistakeItem(e, res, "What to do: ")) : []));
  // not sure: the closest candidates, for the trainer to watch; errors: those close to the level
  const cands = state === "errors" || state === "not_sure" ? (res.candidates || []) : [];
  $("candidates-intro").textContent = state === "not_sure"
    ? "Closest to being reported (check these yourself):"
    : "Close to being reported, but not reported:";
  $("candidates").replaceChildren(...cands.map(e => mistakeItem(e, res, "If you see it: ")));
  $("candidates-box").hidden = cands.length === 0;
  // Above the mark but left out: they cannot happen together with a reported mistake.
  const dropped = state === "errors" ? (res.suppressed || []) : [];
  $("left-out").replaceChildren(...dropped.map(d =>
    el("li", {}, d.name + ": not reported, because " +
      (d.reason.startsWith("excludes") ? "it " : "") + d.reason + ".")));
  $("left-out-box").hidden = dropped.length === 0;
  $("warnings").replaceChildren(...(res.notes || []).map(w =>
    el("p", {class: "warning"}, "Note: " + w)));
  // A video that is not chest compressions gets no figures: they would mean nothing.
  renderMeasures(state === "unsuitable" ? [] : (res.measures || []));
  $("chart-box").hidden = state === "unsuitable";
  if (state !== "unsuitable") renderChart(res);
  renderFrames(res);
  $("result").hidden = false;
  verdict.focus({preventScroll: true});
  verdict.scrollIntoView({behavior: "smooth", block: "start"});
}

// The measured numbers (rate, depth; only when the server has regression runs): the sentence
// with the guideline, how sure, and the likeliest value bins as small bars.
function renderMeasures(measures) {
  $("measures").replaceChildren(...measures.map(m => {
    // under one chance in two of being on that side of the range: no green or orange verdict
    const unsure = present(m.sure) && m.sure < 0.5 ? " unsure" : "";
    const li = el("li", {class: "measure status-" + m.status + unsure, "data-target": m.target});
    li.append(el("span", {class: "measure-text"}, m.text + "."));
    if (m.sure_text) li.append(el("span", {class: "measure-sure"}, capitalise(m.sure_text) + "."));
    const bins = (m.bins || []).filter(b => b.probability >= 0.02);
    if (bins.length) {
      const ul = el("ul", {class: "bins", "aria-label": "How likely each range is"});
      for (const b of bins) {
        const row = el("li", {class: "bin"});
        const track = el("span", {class: "bin-track", "aria-hidden": "true"});
        const fill = el("span", {class: "bin-fill"});
        fill.style.width = (100 * b.probability).toFixed(1) + "%";
        track.append(fill);
        row.append(el("span", {class: "bin-label"}, b.label), track,
          el("span", {class: "bin-value"}, pct(b.probability)));
        ul.append(row);
      }
      li.append(ul);
    }
    return li;
  }));
  $("measures-box").hidden = measures.length === 0;
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
    // a view left out of a verdict that rests on the others (all out: the heading says it)
    const left = res.verdict !== "unsuitable" &&
      ((res.input_check || {}).unsuitable_views || []).includes(v);
    div.append(el("h4", {}, "Camera " + v + (name ? " \u2014 " + name : "") +
      (left ? " (left out: it does not look like chest compressions)" : "")));
    const strip = el("div", {class: "strip"});
    urls.forEach((u, k) => strip.append(el("img", {src: u, alt: "Camera " + v + ", moment " + (k + 1)})));
    div.append(strip);
    box.append(div);
  });
}

// What the chart shows: calibrated probabilities and their marks where the run has them, else
// the raw scores and thresholds. Returns {values, marks, lo, hi, label(v), help}.
function chartScale(res) {
  const names = Object.keys(res.scores);
  if (res.probabilities) {
    return {names, values: names.map(n => res.probabilities[n]),
      marks: names.map(n => (res.marks || {})[n]), lo: 0, hi: 1, label: v => pct(v) + " likely",
      title: "How likely each possible mistake is",
      help: "Each bar is how likely the assistant thinks that mistake is (0 to 100%). Orange " +
        "bars are the mistakes it reports; the black line is the level a bar must reach to be " +
        "reported. Pale orange bars passed it but were left out (see above). The green bar is " +
        "for \u201cno mistake\u201d."};
  }
  const values = names.map(n => res.scores[n]);
  const marks = names.map(n => (res.thresholds || {})[n]);
  if (res.head === "bce") {
    return {names, values, marks, lo: 0, hi: 1, label: v => "score " + Math.round(100 * v),
      title: "The model's score for each possible mistake",
      help: "Each bar is the model's score for that mistake (0 to 100). This model's scores " +
        "have not been tuned into chances: a longer bar is more likely, but 80 does not mean " +
        "80%. Orange bars are the mistakes it reports; the black line is the level a bar must " +
        "reach to be reported. The green bar is for \u201cno mistake\u201d."};
  }
  const known = values.concat(marks.filter(present));
  let lo = Math.min(...known), hi = Math.max(...known);
  lo -= 0.05 * (hi - lo); // the lowest bar still shows
  if (hi - lo < 1e-6) hi = lo + 1;
  return {names, values, marks, lo, hi, label: v => "match " + v.toFixed(3),
      title: "How well the video matches each possible mistake",
    help: "Each bar is how well the video matches a description of that mistake (longer is a " +
      "better match). Orange bars are the mistakes it reports; the black line is the level a " +
      "bar must reach to be reported. Pale orange bars passed it but were left out (see " +
      "above). The green bar is for \u201cno mistake\u201d."};
}

// One row per class: its name and value on a line, the bar below (a phone's width is enough for
// both at the page's text size). Widths are set through the CSSOM, which the page's
// Content-Security-Policy allows (it forbids style attributes).
function renderChart(res) {
  const c = chartScale(res);
  const reported = new Set(res.errors.map(e => e.name));
  const leftOut = new Set((res.suppressed || []).map(d => d.name));
  const frac = v => Math.max(0, Math.min(1, (v - c.lo) / (c.hi - c.lo)));
  $("chart-title").textContent = c.title;
  $("chart-help").textContent = c.help;
  $("chart").replaceChildren(...c.names.map((n, i) => {
    const kind = i === 0 ? "correct" : reported.has(n) ? "reported"
      : leftOut.has(n) ? "left-out" : "other";
    const li = el("li", {class: "bar " + kind, "data-class": n});
    const head = el("div", {class: "bar-head"});
    head.append(el("span", {class: "bar-name"}, i === 0 ? "No mistake (" + n + ")" : n),
      el("span", {class: "bar-value"}, c.label(c.values[i])));
    const track = el("div", {class: "bar-track", "aria-hidden": "true"});
    const fill = el("div", {class: "bar-fill"});
    fill.style.width = (100 * frac(c.values[i])).toFixed(1) + "%";
    track.append(fill);
    // "No mistake" is not reported from a level: the verdict decides it (see the heading)
    if (i > 0 && present(c.marks[i])) {
      const mark = el("div", {class: "bar-mark"});
      mark.style.left = (100 * frac(c.marks[i])).toFixed(1) + "%";
      track.append(mark);
      head.querySelector(".bar-value").textContent +=
        " (reported from " + (res.probabilities ? pct(c.marks[i]) : c.label(c.marks[i])) + ")";
    }
    li.append(head, track);
    return li;
  }));
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
    $("model-info").textContent = "Model: " + info.run +
      (info.model && info.model !== info.run ? " (" + info.model + ")" : "") +
      (info.backbone ? ", on " + info.backbone + " features" : "");
    for (const v of [1, 2, 3, 4]) $("slot" + v).hidden = v > limits.max_files;
  } catch (err) {
    showMessage("The server could not be reached. Is it still running?");
  }
  document.body.dataset.ready = "1";
}

start();
