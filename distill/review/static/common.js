// Shared by the run and eval pages. Every value from the server (and so every piece of model output) enters
// the document through textContent or a form field's value: never as HTML.
"use strict";

const PAGE_SIZE = 50;

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "className") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function $(id) { return document.getElementById(id); }

async function api(path, body) {
  const options = { headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch("api/" + path, options);
  } catch (error) {
    throw new Error("the review server does not answer (is `distill review` still running?)");
  }
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch (error) { data = { error: text }; }
  if (!response.ok) throw new Error((data && data.error) || ("HTTP " + response.status));
  return data;
}

function say(message, kind) {
  const box = $("save-state");
  box.textContent = message;
  box.className = kind || "";
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  return typeof value === "number" ? value.toFixed(digits === undefined ? 2 : digits) : String(value);
}

function clock(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return isNaN(date) ? iso : date.toLocaleString();
}

// A JSON answer is shown as its fields; anything else as text.
function answerView(text, isJson) {
  if (text === null || text === undefined) return h("p", { className: "muted" }, "(no answer)");
  if (isJson) {
    let value = null;
    try { value = JSON.parse(text); } catch (error) { value = null; }
    if (value && typeof value === "object" && !Array.isArray(value)) {
      const rows = Object.entries(value).map(([key, field]) =>
        h("tr", {}, h("th", {}, key), h("td", {}, typeof field === "string" ? field : JSON.stringify(field))));
      return h("div", {},
        h("table", { className: "fields" }, h("tbody", {}, rows)),
        h("details", {}, h("summary", {}, "raw JSON"), h("pre", { className: "text" }, text)));
    }
  }
  return h("pre", { className: "text answer" }, text);
}

function looksJson(text) {
  if (typeof text !== "string") return false;
  const start = text.trim()[0];
  if (start !== "{" && start !== "[") return false;
  try { JSON.parse(text); return true; } catch (error) { return false; }
}

// A paged list with one selected row; next/previous cross page boundaries.
class ListView {
  constructor({ fetchPage, renderRow, onSelect }) {
    this.fetchPage = fetchPage;
    this.renderRow = renderRow;
    this.onSelect = onSelect;
    this.offset = 0;
    this.total = 0;
    this.rows = [];
    this.selected = -1;
    $("page-prev").addEventListener("click", () => this.load(Math.max(0, this.offset - PAGE_SIZE), 0));
    $("page-next").addEventListener("click", () => {
      if (this.offset + PAGE_SIZE < this.total) this.load(this.offset + PAGE_SIZE, 0);
    });
  }

  async load(offset, select) {
    const started = performance.now();
    const page = await this.fetchPage(offset, PAGE_SIZE);
    this.offset = offset;
    this.total = page.total;
    this.rows = page.rows;
    this.render();
    const last = Math.max(1, Math.ceil(this.total / PAGE_SIZE));
    $("page-info").textContent = ` ${this.total.toLocaleString()} match · page ${Math.floor(offset / PAGE_SIZE) + 1} of ${last} · ${Math.round(performance.now() - started)} ms `;
    if (this.rows.length === 0) { this.selected = -1; this.onSelect(null); return; }
    await this.select(select === "last" ? this.rows.length - 1 : Math.min(select || 0, this.rows.length - 1));
  }

  render() {
    const body = $("rows").tBodies[0];
    body.replaceChildren(...this.rows.map((row, i) => {
      const tr = this.renderRow(row, this.offset + i);
      tr.addEventListener("click", () => this.select(i));
      if (i === this.selected) tr.classList.add("selected");
      return tr;
    }));
  }

  async select(i) {
    this.selected = i;
    const body = $("rows").tBodies[0];
    [...body.rows].forEach((tr, k) => tr.classList.toggle("selected", k === i));
    if (body.rows[i]) body.rows[i].scrollIntoView({ block: "nearest" });
    await this.onSelect(this.rows[i] || null);
  }

  replace(i, row) {
    this.rows[i] = row;
    const body = $("rows").tBodies[0];
    const tr = this.renderRow(row, this.offset + i);
    tr.addEventListener("click", () => this.select(i));
    if (i === this.selected) tr.classList.add("selected");
    if (body.rows[i]) body.rows[i].replaceWith(tr);
  }

  async next() {
    if (this.selected + 1 < this.rows.length) return this.select(this.selected + 1);
    if (this.offset + PAGE_SIZE < this.total) return this.load(this.offset + PAGE_SIZE, 0);
  }

  async previous() {
    if (this.selected > 0) return this.select(this.selected - 1);
    if (this.offset > 0) return this.load(Math.max(0, this.offset - PAGE_SIZE), "last");
  }
}

// Keys act only when no text field has the focus (Esc leaves one).
function typing(event) {
  const target = event.target;
  return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT");
}
