// Swarmlet's cluster view: renders what /api/events pushes (a `view` on
// every change, each `change` into the event feed). No other origin is
// contacted; no library is used.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function age(sinceMs, nowMs) {
  const s = Math.max(0, Math.round((nowMs - sinceMs) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.round(s / 60) + "m";
  if (s < 86400) return Math.round(s / 3600) + "h";
  return Math.round(s / 86400) + "d";
}

function gib(bytes) {
  return (bytes / (1 << 30)).toFixed(1);
}

function showDetail(text) {
  const d = $("#detail");
  d.textContent = text;
  d.hidden = false;
}

function renderServices(view) {
  const body = $("#services tbody");
  body.replaceChildren(...view.services.map((s) => {
    const pct = s.desired > 0 ? Math.min(100, Math.round(100 * s.running / s.desired)) : 100;
    const bar = el("span", { class: "bar" }, el("span"));
    bar.firstChild.style.width = pct + "%";
    return el("tr", { class: s.converging ? "converging" : "", "data-service": s.name },
      el("td", {}, s.name),
      el("td", {}, s.mode),
      el("td", { class: "replicas" }, `${s.running}/${s.desired}`, bar),
      el("td", {}, s.image),
      el("td", {}, s.ports.join(", ")),
      el("td", { title: s.update_message }, s.update_state));
  }));
}

// Node columns are re-rendered only when their data changed.
const columns = new Map();

function renderNode(n, view) {
  const cls = ["node", n.status, n.availability].join(" ");
  const cpu = `${(n.reserved_nano_cpus / 1e9).toFixed(1)}/${(n.nano_cpus / 1e9).toFixed(1)} CPU`;
  const mem = `${gib(n.reserved_memory_bytes)}/${gib(n.memory_bytes)} GiB`;
  const col = el("div", { class: cls, "data-node": n.hostname, "data-role": n.role, "data-status": n.status },
    el("h3", {}, el("span", {}, n.hostname), n.leader ? el("span", { class: "leader", title: "Raft leader" }, "★ leader") : null),
    el("div", { class: "meta" }, `${n.role} · ${n.status} · ${n.availability}`, el("br"), `${cpu} · ${mem}`));
  if (n.status_message) col.title = n.status_message;
  for (const c of n.cards) {
    const card = el("div", { class: "card " + c.state, "data-task": c.id, "data-state": c.state, "data-service": c.service },
      el("span", {}, c.name), el("span", { class: "age" }, c.state + " " + age(c.since_ms, view.at_ms)));
    card.title = c.error || `${c.name} ${c.state} (desired ${c.desired})`;
    card.addEventListener("click", () => showDetail(
      `${c.name}  ${c.id}\nstate ${c.state} (desired ${c.desired})\n${c.error || ""}`));
    col.append(card);
  }
  for (const g of n.groups) {
    col.append(el("div", { class: "group " + g.state, "data-service": g.service, "data-state": g.state },
      el("span", {}, g.service), el("span", {}, `${g.count} ${g.state}`)));
  }
  return col;
}

function renderBoard(view) {
  const board = $("#board");
  const seen = new Set();
  let previous = null;
  for (const n of view.nodes) {
    seen.add(n.id);
    const key = JSON.stringify(n) + "|" + Math.floor(view.at_ms / 10000);
    let entry = columns.get(n.id);
    if (!entry || entry.key !== key) {
      const col = renderNode(n, view);
      if (entry) entry.col.replaceWith(col);
      entry = { key, col };
      columns.set(n.id, entry);
    }
    const want = previous ? previous.nextSibling : board.firstChild;
    if (want !== entry.col) board.insertBefore(entry.col, want);
    previous = entry.col;
  }
  for (const [id, entry] of columns) {
    if (!seen.has(id)) {
      entry.col.remove();
      columns.delete(id);
    }
  }
  $("#node-count").textContent = `(${view.nodes.length})`;
}

function renderNetworks(view) {
  $("#networks tbody").replaceChildren(...view.networks.map((n) => el("tr", { "data-network": n.name },
    el("td", {}, n.name + (n.ingress ? " (ingress)" : "")),
    el("td", {}, n.subnet),
    el("td", {}, n.services.join(", ")),
    el("td", {}, Object.entries(n.lb).map(([h, a]) => `${h} ${a}`).join(", ")))));
}

function render(view) {
  for (const s of view.services) serviceNames.set(s.id, s.name);
  $("#cluster").textContent = view.cluster.id ? `cluster ${view.cluster.id.slice(0, 12)}` : "";
  renderServices(view);
  renderBoard(view);
  renderNetworks(view);
  document.body.dataset.renderedAt = String(view.at_ms);
}

// Service names by ID, from the last view (task events name the service by ID).
const serviceNames = new Map();

function addEvent(e) {
  const a = e.attributes || {};
  const service = a.service ? (serviceNames.get(a.service) || a.service) : "";
  const task = service && a.slot ? `${service}.${a.slot}` : service;
  const what = a.name || task || e.id;
  const extra = a.state ? ` ${a.state}` : "";
  const line = `${new Date(e.time_ms).toLocaleTimeString()} ${e.type} ${e.action} ${what}${extra}`;
  const list = $("#events");
  list.prepend(el("li", {}, line));
  while (list.children.length > 200) list.lastChild.remove();
}

function connect() {
  const live = $("#live");
  const source = new EventSource("/api/events");
  source.addEventListener("view", (m) => {
    live.className = "live on";
    live.textContent = "live";
    render(JSON.parse(m.data));
  });
  source.addEventListener("change", (m) => addEvent(JSON.parse(m.data)));
  source.addEventListener("trouble", (m) => {
    live.className = "live off";
    live.textContent = m.data;
  });
  source.onerror = () => {
    live.className = "live off";
    live.textContent = "reconnecting…";
  };
}

$("#detail").addEventListener("click", () => { $("#detail").hidden = true; });
connect();
