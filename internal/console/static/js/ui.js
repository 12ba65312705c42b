// DOM helpers: elements are built with h(), never from HTML strings, so no
// value shown can inject markup and the strict content security policy
// (no inline styles or scripts) holds.

export function h(tag, attrs, ...children) {
  const el = document.createElementNS(tag === "svg" || attrs?.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false || k === "svg") continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", Array.isArray(v) ? v.filter(Boolean).join(" ") : v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value" && "value" in el) el.value = v;
    else if (k === "checked" || k === "disabled" || k === "selected" || k === "hidden") el[k] = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// add appends children to el, skipping null, undefined and false (which
// the DOM's own append would print).
export function add(el, ...children) { append(el, children); return el; }

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

export function link(href, ...children) { return h("a", { href }, ...children); }

// table renders rows with columns {title, render(row) | key, num, class}.
export function table(rows, columns, opts = {}) {
  if (!rows || rows.length === 0) return h("p", { class: "empty" }, opts.empty || "Nothing here.");
  return h("div", { class: "table-wrap" }, h("table", { class: opts.class },
    h("thead", null, h("tr", null, columns.map(c => h("th", { class: c.num ? "num" : null }, c.title ?? c.key)))),
    h("tbody", null, rows.map(r => h("tr", { class: opts.rowClass ? opts.rowClass(r) : null, dataset: opts.rowData ? opts.rowData(r) : null },
      columns.map(c => h("td", { class: [c.num ? "num" : null, c.class] }, c.render ? c.render(r) : fmtCell(r[c.key])))))),
  ));
}

function fmtCell(v) {
  if (v === null || v === undefined || v === "") return h("span", { class: "muted" }, "—");
  return String(v);
}

const statusClass = {
  UP: "ok", RUNNING: "ok", CONFIRMED: "ok", DELIVERED: "ok", SHIPPED: "ok", Stable: "ok", success: "ok", published: "ok",
  replayed: "ok", applied: "ok", reserved: "ok", committed: "ok", evicted: "ok",
  DEGRADED: "warn", PAUSED: "warn", PENDING: "warn", PROCESSING: "info", UNASSIGNED: "warn", STANDBY: "info", pending: "warn", new: "warn",
  PreparingRebalance: "warn", CompletingRebalance: "warn", rejected: "warn", released: "info", Empty: "muted", discarded: "muted",
  DOWN: "bad", FAILED: "bad", CANCELLED: "bad", failed: "bad", error: "bad", denied: "bad", Dead: "bad", blocked: "bad",
};

export function badge(s, cls) {
  return h("span", { class: ["badge", cls || statusClass[s] || "info"] }, s ?? "—");
}

export function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function fmtDuration(secs) {
  if (secs === null || secs === undefined) return "—";
  secs = Number(secs);
  if (secs < 1) return `${Math.round(secs * 1000)} ms`;
  if (secs < 60) return `${secs.toFixed(secs < 10 ? 1 : 0)} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ${Math.round(secs % 60)} s`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ${Math.round((secs % 3600) / 60)} min`;
  return `${Math.floor(secs / 86400)} d ${Math.round((secs % 86400) / 3600)} h`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  return fmtDuration(ms / 1000);
}

export function fmtTime(t) {
  if (!t) return "—";
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toISOString().replace("T", " ").replace("Z", " UTC");
}

export function timeCell(t) {
  if (!t) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: t, title: fmtTime(t) }, ago(t));
}

export function ago(t) {
  const secs = (Date.now() - new Date(t).getTime()) / 1000;
  if (secs < 0) return "in " + fmtDuration(-secs);
  if (secs < 2) return "just now";
  return fmtDuration(secs) + " ago";
}

export function short(s, n = 12) {
  if (!s) return "";
  return s.length > n ? s.slice(0, n) + "…" : s;
}

export function pretty(text, isJSON) {
  if (text === null || text === undefined) return h("pre", { class: "code muted" }, "null (tombstone)");
  if (isJSON !== false) {
    try { return h("pre", { class: "code" }, JSON.stringify(JSON.parse(text), null, 2)); } catch { /* not JSON */ }
  }
  return h("pre", { class: "code" }, text);
}

// sparkline draws values as a small area chart (inline SVG: attributes,
// not styles, so the CSP allows it).
export function sparkline(values, opts = {}) {
  const w = opts.width || 220, ht = opts.height || 44;
  const svg = h("svg", { svg: true, class: "spark", viewBox: `0 0 ${w} ${ht}`, preserveAspectRatio: "none", role: "img",
    "aria-label": opts.label || "trend" });
  const vals = values.filter(v => v !== null && v !== undefined && !Number.isNaN(v));
  if (vals.length < 2) {
    svg.append(h("text", { svg: true, x: 4, y: ht / 2 + 4, class: "spark-empty" }, "collecting…"));
    return svg;
  }
  const maxV = Math.max(...vals, opts.min || 0) || 1;
  const step = w / (values.length - 1);
  const pts = values.map((v, i) => [i * step, ht - 2 - ((v ?? 0) / maxV) * (ht - 6)]);
  const line = pts.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1)).join(" ");
  svg.append(h("path", { svg: true, d: `${line} L ${w} ${ht} L 0 ${ht} Z`, class: "spark-area" }));
  svg.append(h("path", { svg: true, d: line, class: "spark-line" }));
  return svg;
}

// dialog shows a modal and resolves with the button value (or null).
export function dialog(title, body, buttons) {
  return new Promise(resolve => {
    const close = v => { overlay.remove(); document.removeEventListener("keydown", onKey); resolve(v); };
    const onKey = e => { if (e.key === "Escape") close(null); };
    const overlay = h("div", { class: "overlay", role: "dialog", "aria-modal": "true", "aria-label": title },
      h("div", { class: "modal" },
        h("h2", null, title),
        h("div", { class: "modal-body" }, body),
        h("div", { class: "modal-actions" }, buttons.map(b =>
          h("button", { type: "button", class: b.class || "", dataset: { action: b.value }, onclick: () => close(b.value) }, b.label))),
      ));
    document.addEventListener("keydown", onKey);
    document.body.append(overlay);
    overlay.querySelector(".modal-actions button:last-child")?.focus();
  });
}

// confirmAction asks before a change; resolves true when confirmed.
export async function confirmAction(title, message, confirmLabel = "Confirm", danger = false) {
  const v = await dialog(title, h("p", null, message), [
    { label: "Cancel", value: "cancel" },
    { label: confirmLabel, value: "ok", class: danger ? "danger" : "primary" },
  ]);
  return v === "ok";
}

let toastTimer;
export function toast(msg, kind = "ok") {
  let el = document.getElementById("toast");
  if (!el) { el = h("div", { id: "toast", role: "status" }); document.body.append(el); }
  el.className = "toast " + kind;
  el.textContent = msg;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

// errorBox renders an error (ApiError with field errors) inline.
export function errorBox(err) {
  if (!err) return null;
  return h("div", { class: "alert", role: "alert" }, err.message || String(err),
    err.fields && err.fields.length ? h("ul", null, err.fields.map(f => h("li", null, h("code", null, f.field), " ", f.message))) : null);
}

export function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", null, label), input, hint ? h("small", null, hint) : null);
}

export function select(name, options, value, attrs = {}) {
  return h("select", Object.assign({ name }, attrs), options.map(o => {
    const [v, l] = Array.isArray(o) ? o : [o, o];
    return h("option", { value: v, selected: String(v) === String(value ?? "") }, l);
  }));
}

export function card(title, ...body) {
  return h("section", { class: "card" }, title ? h("h3", null, title) : null, ...body);
}

export function stat(label, value, sub) {
  return h("div", { class: "stat" }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value),
    sub ? h("div", { class: "stat-sub" }, sub) : null);
}

// Local date-time inputs speak local time; the API speaks RFC 3339.
export function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const p = n => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fromLocalInput(v) {
  if (!v) return "";
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

// humanKey turns a field name (camelCase or snake_case) into words; names
// that are data (topics, groups, stores) stay as they are.
export function humanKey(k) {
  k = String(k);
  if (!/^[a-z][a-zA-Z0-9_]*$/.test(k)) return k;
  return k.replace(/_+/g, " ").replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .replace(/^./, c => c.toUpperCase());
}
