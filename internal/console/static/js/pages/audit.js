// Audit log: every mutation with who, what, where and the outcome; filtered
// by actor, action, resource and time, newest first, page by page.
import { api } from "../api.js";
import { h, add, table, badge, fmtTime, field, select, toLocalInput, fromLocalInput } from "../ui.js";

export async function render(ctx) {
  const { root, route, navigate, href } = ctx;
  const p = route.params;
  const q = new URLSearchParams({ limit: p.get("limit") || "50" });
  for (const k of ["actor", "action", "target", "outcome", "since", "until", "cursor"]) if (p.get(k)) q.set(k, p.get(k));
  add(root, h("div", { class: "page-head" }, h("h1", null, "Audit log")),
    h("form", { class: "search", id: "audit-filter", onsubmit: e => {
      e.preventDefault();
      const f = new FormData(e.target);
      navigate(["audit"], { actor: f.get("actor"), action: f.get("action"), target: f.get("target"), outcome: f.get("outcome"),
        since: fromLocalInput(f.get("since")), until: fromLocalInput(f.get("until")) });
    } },
      h("div", { class: "grid" },
        field("Actor", h("input", { name: "actor", value: p.get("actor") || "", placeholder: "user:alice or apikey:ci" })),
        field("Action", h("input", { name: "action", value: p.get("action") || "", placeholder: "POST /api/v1/orders" })),
        field("Resource", h("input", { name: "target", value: p.get("target") || "", placeholder: "path prefix, e.g. /api/v1/orders/" })),
        field("Outcome", select("outcome", [["", "any"], "success", "denied", "rejected", "error"], p.get("outcome") || "")),
        field("Since", h("input", { name: "since", type: "datetime-local", step: 1, value: toLocalInput(p.get("since")) })),
        field("Until", h("input", { name: "until", type: "datetime-local", step: 1, value: toLocalInput(p.get("until")) }))),
      h("div", { class: "bar" }, h("button", { type: "submit", class: "primary" }, "Filter"), h("a", { class: "button", href: href(["audit"]) }, "Clear"))));
  const data = await api("/api/v1/ops/audit?" + q);
  if (ctx.stale()) return;
  add(root, table(data.items, [
    { title: "When", class: "nowrap", render: e => fmtTime(e.at) },
    { title: "Actor", render: e => h("a", { href: href(["audit"], { actor: e.actor }) }, e.actor) },
    { title: "Action", render: e => h("a", { href: href(["audit"], { action: e.action }) }, e.action) },
    { title: "Resource", render: e => h("code", null, e.target) },
    { title: "Status", num: true, key: "status" },
    { title: "Outcome", render: e => badge(e.outcome) },
    { title: "Request", render: e => h("code", { class: "muted" }, e.request_id) },
    { title: "Client", key: "client_ip" },
    { title: "ms", num: true, render: e => e.duration_ms.toFixed(1) },
  ], { empty: "No audit entries match." }),
  h("div", { class: "bar" },
    p.get("cursor") ? h("a", { class: "button", href: href(["audit"], { ...Object.fromEntries(p), cursor: "" }) }, "Newest") : null,
    data.next_cursor ? h("a", { class: "button", id: "audit-next", href: href(["audit"], { ...Object.fromEntries(p), cursor: data.next_cursor }) }, "Older") : null));
}
