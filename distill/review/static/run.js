// The run review page: list, read, decide. See common.js for how text is put into the page.
"use strict";

const FILTERS = ["q", "status", "reason", "decision", "min_len", "max_len", "min_agreement", "max_agreement",
  "min_score", "max_score", "sort"];
let current = null;      // the record shown
let busy = false;        // a decision is being saved: no second one until the server answers
let list = null;
let wasIndexing = false;
let progressTimer = null;

function filterParams() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = $("f-" + name).value.trim();
    if (value !== "") params.set(name, value);
  }
  return params;
}

function decisionLabel(row) {
  if (row.status !== "accepted") return "";
  if (!row.decision) return "unreviewed";
  if (row.decision === "approve") return row.edited ? "approved (edited)" : "approved";
  return row.decided_by === "judge" ? "rejected (low_score)" : "rejected";
}

function renderRow(row, position) {
  const status = row.status === "accepted" ? "accepted" : `${row.status}: ${row.reason || ""}`;
  return h("tr", { className: "d-" + (row.decision || "none") + " s-" + row.status, "data-row": row.row },
    h("td", {}, position + 1), h("td", {}, `${row.id} #${row.sample_index}`), h("td", {}, status),
    h("td", { className: "decision" }, decisionLabel(row)), h("td", {}, fmt(row.length, 0)),
    h("td", {}, fmt(row.agreement)), h("td", {}, fmt(row.score, 1)),
    h("td", { className: "preview" }, row.preview || ""));
}

async function fetchPage(offset, limit) {
  const params = filterParams();
  params.set("offset", offset);
  params.set("limit", limit);
  return api("records?" + params.toString());
}

function section(title, ...content) {
  return h("section", { className: "part" }, h("h2", {}, title), ...content);
}

function showRecord(record) {
  current = record;
  closeForms();
  if (!record) {
    $("record-head").replaceChildren(h("p", { className: "muted" }, "No record matches these filters."));
    $("record-body").replaceChildren();
    return;
  }
  const decided = record.current;
  let state = "unreviewed";
  if (record.status !== "accepted") state = `not reviewable: ${record.status} by the engine (${record.reason})`;
  else if (decided) {
    state = `${decided.decision === "approve" ? (decided.edited ? "approved with an edited answer" : "approved")
      : "rejected" + (decided.reason ? ": " + decided.reason : "")} by ${decided.reviewer} (${decided.by}), ${clock(decided.at)}`;
  }
  $("record-head").replaceChildren(
    h("h2", { className: "title" }, `${record.id} · sample ${record.sample_index}`),
    h("p", { className: "state " + (decided ? "d-" + decided.decision : "d-none"), id: "decision-state" }, state),
    h("p", { className: "muted" }, `status ${record.status}${record.reason ? " (" + record.reason + ")" : ""} · `
      + `model ${record.source_model || "–"} · agreement ${fmt(record.agreement)} · judge score ${fmt(record.score, 1)}`
      + (record.score_problem ? ` (${record.score_problem})` : "")));
  const parts = [section("Input", h("pre", { className: "text input" }, record.instruction || ""))];
  if (record.status === "failed") {
    parts.push(section("Failure", h("pre", { className: "text" }, `${record.error_class}: ${record.message} (${record.attempts} attempts)`)));
  } else {
    if (decided && decided.edited) {
      parts.push(section("Answer (edited)", answerView(decided.output, looksJson(decided.output))));
      parts.push(h("details", {}, h("summary", {}, "original answer"), answerView(record.output, record.answer_is_json)));
    } else {
      parts.push(section("Answer", record.output !== null ? answerView(record.output, record.answer_is_json)
        : h("pre", { className: "text" }, record.response || "")));
    }
    parts.push(section("Filter verdicts", h("ul", { className: "verdicts" }, record.verdicts.map((v) =>
      h("li", { className: v.passed ? "pass" : "fail" }, h("b", {}, (v.passed ? "✓ " : "✗ ") + v.check), " ", v.detail)))));
    const thinking = decided && decided.edited ? decided.thinking : record.thinking;
    if (thinking) parts.push(section("Thinking", h("pre", { className: "text thinking" }, thinking)));
  }
  if (record.siblings.length) {
    parts.push(section(`Other samples of this input (${record.siblings.length})`, h("div", { className: "siblings" },
      record.siblings.map((s) => h("article", { className: "sibling s-" + s.status },
        h("h3", {}, h("a", { href: "#", onclick: (event) => { event.preventDefault(); openRow(s.row); } },
          `sample ${s.sample_index}`), ` · ${s.status}${s.reason ? " (" + s.reason + ")" : ""}`
          + (s.decision ? ` · ${s.decision}${s.edited ? " (edited)" : ""}` : "")),
        s.output !== null && s.output !== undefined ? answerView(s.output, looksJson(s.output))
          : h("pre", { className: "text" }, s.response || ""))))));
  }
  if (record.history.length) {
    parts.push(section("Decisions, oldest first", h("ol", { className: "history" }, record.history.map((d) =>
      h("li", {}, `${clock(d.at)} · ${d.reviewer} (${d.by}) · ${d.decision}${d.edited ? " with an edit" : ""}`
        + (d.reason ? " · " + d.reason : ""))))));
  }
  $("record-body").replaceChildren(...parts);
  const reviewable = record.status === "accepted";
  for (const id of ["act-approve", "act-reject", "act-edit", "act-clear"]) $(id).disabled = !reviewable;
}

async function openRow(row) {
  try {
    showRecord(await api("records/" + row));
  } catch (error) {
    say("Could not load the record: " + error.message, "error");
  }
}

async function onSelect(row) {
  if (!row) return showRecord(null);
  await openRow(row.row);
}

async function refreshProgress() {
  try {
    const p = await api("progress");
    const c = p.counts;
    const share = c.accepted ? Math.round(100 * c.approved / c.accepted) : 0;
    $("progress").replaceChildren(...[
      h("span", { className: "count d-approve" }, `approved ${c.approved.toLocaleString()}`),
      h("span", { className: "count d-reject" }, `rejected ${c.rejected.toLocaleString()}`),
      c.judge_rejected ? h("span", { className: "count d-reject" }, `low_score ${c.judge_rejected.toLocaleString()}`) : null,
      h("span", { className: "count" }, `unreviewed ${c.unreviewed.toLocaleString()}`),
      h("span", { className: "muted" }, ` of ${c.accepted.toLocaleString()} accepted (${share}% approved; the seed kept 600 of 3,000, 20%)`
        + ` · filters rejected ${c.filter_rejected.toLocaleString()} · failed ${c.failed.toLocaleString()}`),
    ].filter(Boolean));
    const indexing = p.indexing;
    const behind = indexing.pending_bytes > 0 || indexing.fulltext_behind > 0;
    if (indexing.error) $("progress").append(h("span", { className: "count d-reject" }, "indexing failed: " + indexing.error));
    else if (behind) {
      $("progress").append(h("span", { className: "muted", id: "indexing" }, indexing.pending_bytes > 0
        ? ` · indexing, ${(indexing.pending_bytes / 1e6).toFixed(0)} MB to read: the list grows as it goes`
        : " · building the search index (searches scan meanwhile)"));
      wasIndexing = true;
      clearTimeout(progressTimer);
      progressTimer = setTimeout(refreshProgress, 2000);
    } else if (wasIndexing) {
      wasIndexing = false;
      if (!busy && $("edit-form").hidden && $("reject-form").hidden) list.load(list.offset, Math.max(0, list.selected));
    }
    const select = $("f-reason");
    const chosen = select.value;
    select.replaceChildren(...[h("option", { value: "" }, "any"),
      ...p.reasons.map((r) => h("option", { value: r.reason }, `${r.reason} (${r.count.toLocaleString()})`)),
      c.judge_rejected ? h("option", { value: "low_score" }, `low_score (${c.judge_rejected})`) : null].filter(Boolean));
    select.value = chosen;
  } catch (error) {
    say("Could not load progress: " + error.message, "error");
  }
}

async function refreshReport() {
  try {
    const report = await api("report");
    const lines = [`${report.decided_by_people} decided by people`];
    if (report.judge) {
      lines.push(`judge scored ${report.judge.scored}; people overruled it on ${report.judge.overruled} of ${report.judge.compared}`
        + (report.judge.compared ? ` (${Math.round(100 * report.judge.overrule_rate)}%)` : ""));
    }
    $("report").replaceChildren(...lines.map((line) => h("p", {}, line)));
  } catch (error) {
    $("report").textContent = "";
  }
}

async function decide(body) {
  if (!current || busy || current.status !== "accepted") return;
  busy = true;
  const shown = current;
  say("saving…", "pending");
  try {
    body.seen_seq = shown.current ? shown.current.seq : null;
    const result = await api(`records/${shown.row}/decision`, body);
    const word = result.decision === null ? "back to unreviewed" : result.decision + (result.edited ? " (edited)" : "");
    let message = `Saved: ${shown.id} #${shown.sample_index} ${word} at ${clock(result.at)}`;
    if (result.replaced_unseen) {
      message += ` — replaced a decision made meanwhile (${result.replaced_unseen.decision} by ${result.replaced_unseen.reviewer})`;
    }
    say(message, "saved");
    const i = list.rows.findIndex((row) => row.row === shown.row);
    if (i >= 0) {
      list.replace(i, { ...list.rows[i], decision: result.decision, decided_by: "person", edited: result.edited ? 1 : 0 });
    }
    refreshProgress();
    refreshReport();
    busy = false;
    if (i === list.selected) await list.next();
  } catch (error) {
    busy = false;
    say("NOT saved: " + error.message, "error");
  }
}

function closeForms() {
  $("reject-form").hidden = true;
  $("edit-form").hidden = true;
}

function openReject() {
  if (!current || current.status !== "accepted") return;
  closeForms();
  $("reject-form").hidden = false;
  $("reject-reason").value = "";
  $("reject-reason").focus();
}

function openEdit() {
  if (!current || current.status !== "accepted") return;
  closeForms();
  const edited = current.current && current.current.edited ? current.current : null;
  $("edit-thinking").value = edited ? edited.thinking : (current.thinking || "");
  $("edit-output").value = edited ? edited.output : (current.output || "");
  $("edit-form").hidden = false;
  $("edit-output").focus();
}

function bind() {
  $("act-approve").addEventListener("click", () => decide({ decision: "approve" }));
  $("act-reject").addEventListener("click", openReject);
  $("act-edit").addEventListener("click", openEdit);
  $("act-clear").addEventListener("click", () => decide({ decision: "clear" }));
  $("act-next").addEventListener("click", () => list.next());
  $("act-prev").addEventListener("click", () => list.previous());
  $("reject-cancel").addEventListener("click", closeForms);
  $("edit-cancel").addEventListener("click", closeForms);
  $("reject-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = $("reject-reason").value.trim();
    decide({ decision: "reject", reason: reason || null });
  });
  $("edit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    decide({ decision: "approve", edit: { thinking: $("edit-thinking").value, output: $("edit-output").value } });
  });
  $("edit-original").addEventListener("click", () => decide({ decision: "approve", original: true }));
  $("finish").addEventListener("click", async () => {
    try {
      const result = await api("finish", {});
      say(`Review marked finished at ${clock(result.finished_at)}: \`distill run\` goes on from here`, "saved");
    } catch (error) {
      say("NOT saved: " + error.message, "error");
    }
  });
  let timer = null;
  const reload = () => list.load(0, 0).catch((error) => say(error.message, "error"));
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  const changed = (event) => {
    clearTimeout(timer);
    timer = setTimeout(reload, event.target.id === "f-q" ? 250 : 100);
  };
  $("filters").addEventListener("input", changed);
  $("filters").addEventListener("change", (event) => { if (event.target.tagName === "SELECT") changed(event); });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      closeForms();
      if (typing(event)) event.target.blur();
      return;
    }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("edit-form").hidden) {
      event.preventDefault();
      $("edit-form").requestSubmit();
      return;
    }
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const actions = {
      a: () => decide({ decision: "approve" }), r: openReject, e: openEdit, u: () => decide({ decision: "clear" }),
      j: () => list.next(), ArrowDown: () => list.next(), k: () => list.previous(), ArrowUp: () => list.previous(),
      "/": () => $("f-q").focus(),
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });
}

async function start() {
  list = new ListView({ fetchPage, renderRow, onSelect });
  bind();
  try {
    const meta = await api("meta");
    $("run-name").textContent = `${meta.run_dir} · reviewer ${meta.reviewer}`;
    $("guideline").textContent = meta.guideline || "No guideline configured (set `guideline` in the review config).";
    if (meta.judge && meta.judge.threshold !== null) $("f-sort").value = "score";
    await refreshProgress();
    refreshReport();
    await list.load(0, 0);
  } catch (error) {
    say(error.message, "error");
  }
}

document.addEventListener("DOMContentLoaded", start);
