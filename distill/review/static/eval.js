// The blind student-vs-teacher page: two answers as A and B, names revealed after the person decides.
"use strict";

let current = null;
let busy = false;
let list = null;

function renderRow(row, position) {
  return h("tr", { className: row.preferred ? "d-approve" : "d-none", "data-n": row.n },
    h("td", {}, position + 1), h("td", {}, row.item), h("td", {}, row.student),
    h("td", { className: "decision" }, row.preferred ? row.preferred : "–"));
}

async function fetchPage(offset, limit) {
  const params = new URLSearchParams({ offset, limit });
  const decided = $("f-decided").value;
  if (decided) params.set("decided", decided);
  return api("pairs?" + params.toString());
}

function side(label, text, who) {
  return h("article", { className: "side-answer" }, h("h3", {}, label + (who ? ` — ${who}` : "")),
    answerView(text, looksJson(text)));
}

function showPair(pair) {
  current = pair;
  if (!pair) {
    $("record-head").replaceChildren(h("p", { className: "muted" }, "No pair here."));
    $("record-body").replaceChildren();
    return;
  }
  const reveal = pair.reveal;
  const head = [h("h2", { className: "title" }, `item ${pair.item} · student ${pair.student}`)];
  if (reveal) {
    head.push(h("p", { className: "state d-approve", id: "decision-state" },
      `You preferred ${reveal.preferred} (${clock(reveal.at)}). A was the ${reveal.a}, B the ${reveal.b}. `
      + (reveal.judge ? `The judge ${reveal.judge === "tie" ? "called it a tie" : "preferred the " + reveal.judge}`
        + ` (teacher ${fmt(reveal.teacher_score, 1)}, student ${fmt(reveal.student_score, 1)}): `
        + (reveal.agrees ? "you agree." : "you disagree.") : "The judge gave no verdict on this pair.")));
  } else {
    head.push(h("p", { className: "state d-none", id: "decision-state" }, "undecided: which answer is better?"));
  }
  $("record-head").replaceChildren(...head);
  $("record-body").replaceChildren(...[
    h("section", { className: "part" }, h("h2", {}, "Input"), h("pre", { className: "text" }, pair.input || "(input not found)")),
    pair.reference ? h("section", { className: "part" }, h("h2", {}, "Reference answer"), answerView(pair.reference, looksJson(pair.reference))) : null,
    h("section", { className: "part" }, h("div", { className: "pair" },
      side("A", pair.a, reveal && reveal.a), side("B", pair.b, reveal && reveal.b))),
  ].filter(Boolean));
}

async function onSelect(row) {
  if (!row) return showPair(null);
  try {
    showPair(await api("pairs/" + row.n));
  } catch (error) {
    say("Could not load the pair: " + error.message, "error");
  }
}

async function refreshReport() {
  try {
    const report = await api("report");
    $("progress").textContent = `${report.decided} of ${report.pairs} pairs decided`;
    const lines = Object.entries(report.by_student).map(([name, s]) =>
      `${name}: people preferred the teacher ${s.teacher}, the student ${s.student}, tie ${s.tie}`);
    const a = report.judge_agreement;
    lines.push(a.compared ? `agreement with the judge: ${a.agree} of ${a.compared} (${Math.round(100 * a.rate)}%)`
      : "agreement with the judge: no decided pair has a judge verdict yet");
    $("report").replaceChildren(...lines.map((line) => h("p", {}, line)));
  } catch (error) {
    say(error.message, "error");
  }
}

async function prefer(choice) {
  if (!current || busy) return;
  busy = true;
  const shown = current;
  say("saving…", "pending");
  try {
    const result = await api(`pairs/${shown.n}/preference`, { choice });
    say(`Saved: item ${shown.item}, you preferred ${result.reveal.preferred}`, "saved");
    const i = list.rows.findIndex((row) => row.n === shown.n);
    if (i >= 0) list.replace(i, { ...list.rows[i], preferred: result.reveal.preferred });
    showPair({ ...shown, reveal: result.reveal });
    refreshReport();
  } catch (error) {
    say("NOT saved: " + error.message, "error");
  } finally {
    busy = false;
  }
}

function bind() {
  $("act-a").addEventListener("click", () => prefer("A"));
  $("act-b").addEventListener("click", () => prefer("B"));
  $("act-tie").addEventListener("click", () => prefer("tie"));
  $("act-next").addEventListener("click", () => list.next());
  $("act-prev").addEventListener("click", () => list.previous());
  $("filters").addEventListener("change", () => list.load(0, 0));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && typing(event)) { event.target.blur(); return; }
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const actions = { 1: () => prefer("A"), 2: () => prefer("B"), 3: () => prefer("tie"),
      j: () => list.next(), ArrowDown: () => list.next(), k: () => list.previous(), ArrowUp: () => list.previous() };
    const action = actions[event.key];
    if (action) { event.preventDefault(); action(); }
  });
}

async function start() {
  list = new ListView({ fetchPage, renderRow, onSelect });
  bind();
  try {
    const meta = await api("meta");
    $("run-name").textContent = `${meta.eval_dir} · reviewer ${meta.reviewer}`;
    await refreshReport();
    await list.load(0, 0);
  } catch (error) {
    say(error.message, "error");
  }
}

document.addEventListener("DOMContentLoaded", start);
