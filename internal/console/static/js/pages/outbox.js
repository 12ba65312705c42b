// Outbox: the backlog, the age of its oldest row, failed rows with their
// error, and retrying a failed row (admin).
import { api } from "../api.js";
import { h, add, table, badge, stat, fmtNum, fmtDuration, timeCell, short, confirmAction, toast, errorBox, select } from "../ui.js";

export async function render(ctx) {
  const { root, route, navigate, href, can } = ctx;
  const state = route.params.get("state") || "";
  const q = new URLSearchParams({ limit: "50" });
  if (state) q.set("state", state);
  if (route.params.get("cursor")) q.set("cursor", route.params.get("cursor"));
  const data = await api("/api/v1/ops/outbox?" + q);
  if (ctx.stale()) return;
  const s = data.stats;
  add(root, 
    h("div", { class: "page-head" }, h("h1", null, "Outbox")),
    h("div", { class: "stats" },
      stat("Unpublished", fmtNum(s.pending), s.retrying ? `${fmtNum(s.retrying)} retrying` : "none retrying"),
      stat("Oldest unpublished", s.pending ? fmtDuration(s.oldest_pending_age_seconds) : "—", s.oldest_pending_at ? "since " + new Date(s.oldest_pending_at).toLocaleString() : "backlog empty"),
      stat("Failed", fmtNum(s.failed), s.failed ? "need a retry after their cause is fixed" : "none"),
      stat("Published (kept)", fmtNum(s.published), "pruned after the retention")),
    h("form", { class: "bar", onsubmit: e => { e.preventDefault(); navigate(["outbox"], { state: new FormData(e.target).get("state") }); } },
      h("label", null, "Show ", select("state", [["", "all unpublished"], ["pending", "pending"], ["failed", "failed"]], state, { id: "outbox-state" })),
      h("button", { type: "submit" }, "Show")),
    table(data.events, [
      { title: "Seq", num: true, key: "seq" },
      { title: "Event", render: r => h("span", null, r.event_type, h("br"), h("code", { class: "muted", title: r.id }, short(r.id, 13))) },
      { title: "Order", render: r => r.aggregate_type === "order" ? h("a", { href: href(["orders", r.aggregate_id, "journey"]) }, short(r.aggregate_id, 13)) : r.aggregate_id },
      { title: "Topic", key: "topic" },
      { title: "State", render: r => badge(r.state) },
      { title: "Attempts", num: true, key: "attempts" },
      { title: "Last error", render: r => r.last_error ? h("span", { class: "error-text" }, r.last_error) : "" },
      { title: "Created", render: r => timeCell(r.created_at) },
      { title: "", render: r => r.state === "failed" && can("admin")
        ? h("button", { type: "button", class: "small", dataset: { retry: r.id }, onclick: () => retry(ctx, r) }, "Retry") : "" },
    ], { empty: state === "failed" ? "No failed rows." : "The outbox is drained: every event is published." }),
    data.next_cursor ? h("a", { class: "button", href: href(["outbox"], { state, cursor: data.next_cursor }) }, "Next page") : null);
}

async function retry(ctx, r) {
  if (!(await confirmAction("Retry this event?", `${r.event_type} ${r.id} goes back to the relay's queue now. It is published after later events of order ${r.aggregate_id} that went out meanwhile.`, "Retry"))) return;
  try {
    await api(`/api/v1/ops/outbox/${r.id}/retry`, { method: "POST" });
    toast(`${r.event_type} requeued`);
    ctx.navigate(["outbox"], Object.fromEntries(ctx.route.params), true);
  } catch (err) {
    ctx.root.prepend(errorBox(err));
  }
}
