// Consumer groups: state, members and their assignments, lag per partition,
// and resetting offsets (admin; only while the group has no members).
import { api } from "../api.js";
import { h, add, table, badge, fmtNum, errorBox, field, select, confirmAction, toast, fromLocalInput, toLocalInput } from "../ui.js";

export async function render(ctx) {
  const group = ctx.route.segments[1];
  return group ? renderGroup(ctx, group) : renderList(ctx);
}

async function renderList(ctx) {
  const { root, href } = ctx;
  const data = await api("/api/v1/ops/consumer-groups");
  if (ctx.stale()) return;
  add(root, h("div", { class: "page-head" }, h("h1", null, "Consumer groups")),
    table(data.consumer_groups, [
      { title: "Group", render: g => h("a", { href: href(["groups", g.group]) }, g.group) },
      { title: "State", render: g => badge(g.state) },
      { title: "Members", num: true, render: g => fmtNum(g.members) },
      { title: "Topics", render: g => [...new Set(g.lag.map(l => l.topic))].join(", ") },
      { title: "Total lag", num: true, render: g => lagCell(g.total_lag) },
    ], { empty: "No consumer groups." }));
}

function lagCell(n) {
  return h("span", { class: n > 0 ? "lag warn" : "lag" }, fmtNum(n));
}

async function renderGroup(ctx, name) {
  const { root, href, can } = ctx;
  const g = await api("/api/v1/ops/consumer-groups/" + encodeURIComponent(name));
  if (ctx.stale()) return;
  const maxLag = Math.max(1, ...g.lag.map(l => l.lag));
  add(root, 
    h("div", { class: "crumbs" }, h("a", { href: href(["groups"]) }, "Consumer groups"), " / ", name),
    h("div", { class: "page-head" }, h("h1", null, name), badge(g.state),
      h("span", { class: "muted" }, `${g.members} members · total lag ${fmtNum(g.total_lag)}${g.protocol ? " · " + g.protocol : ""}`)),
    g.error ? errorBox(new Error(g.error)) : null,
    h("h2", null, "Members"),
    table(g.member_list || [], [
      { title: "Client", key: "client_id" },
      { title: "Host", key: "host" },
      { title: "Member id", render: m => h("code", null, m.member_id) },
      { title: "Assigned", render: m => m.assignments.map(a => `${a.topic} [${a.partitions.join(", ")}]`).join("; ") || "nothing" },
    ], { empty: "No members: the group is not consuming now." }),
    h("h2", null, "Lag per partition"),
    table(g.lag, [
      { title: "Topic", render: l => h("a", { href: href(["topics", l.topic]) }, l.topic) },
      { title: "Partition", num: true, key: "partition" },
      { title: "Committed", num: true, render: l => (l.committed < 0 ? "none" : fmtNum(l.committed)) },
      { title: "End", num: true, render: l => fmtNum(l.end) },
      { title: "Lag", num: true, render: l => lagCell(l.lag) },
      { title: "", class: "bar-cell", render: l => {
        if (l.lag <= 0) return "";
        const b = h("div", { class: "lagbar" });
        b.style.width = Math.max(1, Math.round((100 * l.lag) / maxLag)) + "%"; // CSSOM: allowed by the CSP
        return b;
      } },
      { title: "Member", render: l => l.member || "" },
    ], { empty: "The group has committed no offsets." }));
  if (can("admin")) add(root, resetForm(ctx, g));
}

function movesTable(moves) {
  return table(moves, [
    { title: "Topic", key: "topic" }, { title: "Partition", num: true, key: "partition" },
    { title: "From", num: true, render: m => (m.from < 0 ? "none" : fmtNum(m.from)) }, { title: "To", num: true, render: m => fmtNum(m.to) },
  ], { empty: "No partitions to move." });
}

// justReset carries a reset's moves into the page drawn right after it.
let justReset = null;

function resetForm(ctx, g) {
  const topics = [...new Set(g.lag.map(l => l.topic))];
  const out = h("div", { id: "reset-result" });
  if (justReset && justReset.group === g.group) {
    add(out, h("p", { class: "alert ok", id: "reset-lag" }, `Offsets reset. Total lag is now ${fmtNum(g.total_lag)}.`),
      movesTable(justReset.moves));
  }
  justReset = null;
  const busy = g.members > 0;
  const form = h("form", { class: "card form", id: "reset-form" },
    h("h2", null, "Reset offsets"),
    busy ? h("p", { class: "alert warn" }, `The group has ${g.members} member(s). Kafka lets offsets be reset only while nobody consumes: stop its consumers first.`) : null,
    h("div", { class: "grid" },
      field("Move to", select("to", [["earliest", "Earliest"], ["latest", "Latest"], ["timestamp", "Timestamp"]], "earliest")),
      field("Timestamp", h("input", { name: "timestamp", type: "datetime-local", step: 1, value: toLocalInput(new Date(Date.now() - 3600e3).toISOString()) }), "with Move to: timestamp"),
      h("fieldset", { class: "parts" }, h("legend", null, "Topics"),
        topics.map(t => h("label", { class: "check" }, h("input", { type: "checkbox", name: "topic", value: t, checked: true }), " " + t)))),
    h("div", { class: "bar" },
      h("button", { type: "button", id: "reset-dry", disabled: busy, onclick: () => submit(true) }, "Dry run"),
      h("button", { type: "button", id: "reset-apply", class: "danger", disabled: busy, onclick: () => submit(false) }, "Reset offsets…")),
    out);
  async function submit(dry) {
    const f = new FormData(form);
    const body = { to: f.get("to"), topics: f.getAll("topic"), dry_run: dry };
    if (body.to === "timestamp") body.timestamp = fromLocalInput(f.get("timestamp"));
    if (!dry && !(await confirmAction("Reset offsets?", `Group ${g.group} will resume from the ${body.to} offsets of ${body.topics.join(", ")}: records are skipped or read again.`, "Reset", true))) return;
    out.replaceChildren();
    try {
      const res = await api(`/api/v1/ops/consumer-groups/${encodeURIComponent(g.group)}/offsets`, { method: "POST", body });
      if (dry) out.append(h("p", null, "Dry run — nothing changed. The reset would move:"), movesTable(res.moves));
      if (!dry) {
        toast(`Offsets of ${g.group} reset`);
        // Draw the group again, its lag table included, with what changed.
        justReset = { group: g.group, moves: res.moves };
        ctx.navigate(["groups", g.group], null, true);
      }
    } catch (err) {
      out.append(errorBox(err));
    }
  }
  return form;
}
