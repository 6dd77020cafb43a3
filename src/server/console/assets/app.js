// warmline console. Vanilla JS, no build step. Caller data only ever goes into the page
// through textContent and SVG attributes, never as HTML.
"use strict";

const OUTCOMES = ["transferred", "self_served", "caller_hangup", "transfer_failed", "stream_dropped"];
const REASONS = ["explicit_request", "repeated_request", "dtmf", "negative_sentiment", "not_understood",
  "low_confidence", "unsupported_language", "dialplan", "system_fault", "overload"];
const QUEUES = ["billing", "orders", "technical", "general"];
const PRIORITIES = ["normal", "high", "urgent"];
const PALETTE = ["#1f6f5c", "#b5651d", "#3d5a99", "#b3261e", "#7a5c99", "#4f8f3a", "#99803d",
  "#2b8a9e", "#8e4d6b", "#666"];
const SVG = "http://www.w3.org/2000/svg";

const app = {
  me: null,
  live: new Map(),     // call_sid -> call (stored record + live view)
  source: null,
  listeners: new Set(), // views that want every live event
};

// ---------- small DOM helpers ----------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children.flat()) if (c) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const words = (s) => (s || "").replace(/_/g, " ");

function clock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function when(rfc) {
  if (!rfc) return "";
  const d = new Date(rfc);
  return isNaN(d) ? rfc : d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  if (r.status === 401) {
    location.href = "/console/login";
    throw new Error("logged out");
  }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// ---------- the live feed ----------

function connect() {
  if (app.source) app.source.close();
  const feed = document.getElementById("feed");
  const es = new EventSource("/console/api/live");
  app.source = es;
  es.addEventListener("open", () => feed.classList.add("on"));
  es.addEventListener("snapshot", (m) => {
    app.live.clear();
    for (const c of JSON.parse(m.data).calls) app.live.set(c.call_sid, c);
    notify(null);
  });
  es.addEventListener("call", (m) => {
    const ev = JSON.parse(m.data);
    apply(ev);
    notify(ev);
  });
  // Fell behind: start again from what the store holds.
  es.addEventListener("resync", () => setTimeout(connect, 100));
  es.addEventListener("error", async () => {
    feed.classList.remove("on");
    if (es.readyState === EventSource.CLOSED) {
      // Session gone, or the server restarted: api() sends a logged-out page to the login.
      try { await api("/console/api/me"); setTimeout(connect, 2000); } catch (_) { /* redirected */ }
    }
  });
}

function apply(ev) {
  let call = app.live.get(ev.call_sid);
  if (ev.type === "begin") {
    call = { call_sid: ev.call_sid, from: ev.from, to: ev.to, started_at: ev.started_at,
      transcript: [], live: ev.live };
    app.live.set(ev.call_sid, call);
    return;
  }
  if (!call) return;
  if (ev.live) call.live = ev.live;
  if (ev.type === "line") call.transcript.push(ev.line);
  if (ev.type === "handoff") Object.assign(call, { queue: ev.queue, reason: ev.reason, priority: ev.priority });
  if (ev.type === "transfer") call.transfer = { status: ev.status, detail: ev.detail };
  if (ev.type === "finish") {
    call.outcome = ev.outcome;
    call.ended_at = ev.ended_at;
    // Stays on the board a little while, so a supervisor sees how it ended.
    setTimeout(() => {
      if (app.live.get(ev.call_sid) === call) { app.live.delete(ev.call_sid); notify(null); }
    }, 15000);
  }
}

function notify(ev) {
  for (const f of app.listeners) f(ev);
}

// ---------- views ----------

const views = {
  live: liveView,
  call: callView,
  history: historyView,
  trends: trendsView,
  users: usersView,
};

function route() {
  const [path, query] = (location.hash.replace(/^#\/?/, "") || "live").split("?");
  const [name, arg] = path.split("/");
  const view = views[name] || liveView;
  app.listeners.clear();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.dataset.nav === name);
  const main = document.getElementById("view");
  main.replaceChildren();
  view(main, arg ? decodeURIComponent(arg) : null, new URLSearchParams(query || ""));
}

function liveView(main) {
  const count = el("span", { class: "muted" });
  const board = el("div", { class: "board", id: "board" });
  main.append(el("h1", {}, "Live calls ", count), board);
  const cards = new Map();

  function render() {
    const calls = [...app.live.values()].sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""));
    count.textContent = `· ${calls.filter((c) => !c.outcome).length} active`;
    for (const [sid, node] of cards) if (!app.live.has(sid)) { node.remove(); cards.delete(sid); }
    for (const c of calls) {
      const node = liveCard(c);
      const old = cards.get(c.call_sid);
      if (old) old.replaceWith(node); else board.append(node);
      cards.set(c.call_sid, node);
    }
    if (!calls.length) board.replaceChildren(el("p", { class: "empty", text: "No calls right now. They appear here the moment they connect." }));
    else board.querySelector(".empty")?.remove();
  }
  app.listeners.add(render);
  render();
  const tick = setInterval(() => {
    if (!document.getElementById("board")) return clearInterval(tick);
    for (const n of document.querySelectorAll(".elapsed[data-since]")) {
      n.textContent = clock(Date.now() - Date.parse(n.dataset.since));
    }
  }, 1000);
}

function liveCard(c) {
  const v = c.live || {};
  const state = c.outcome ? "ended" : v.state || "live";
  const lines = (c.transcript || []).map((l) =>
    el("li", { class: l.speaker }, el("span", { class: "who", text: l.speaker === "caller" ? "caller" : "line" }), l.text));
  const list = el("ol", { class: "transcript" }, lines);
  setTimeout(() => { list.scrollTop = list.scrollHeight; });
  const requests = v.person_requests || 0;
  return el("article", { class: `call${c.outcome ? " ended" : ""}`, "data-call": c.call_sid },
    el("div", { class: "call-head" },
      el("span", { class: "number", text: c.from || "unknown number" }),
      el("span", { class: `badge state-${state}`, "data-state": state, text: c.outcome ? words(c.outcome) : state }),
      c.priority ? el("span", { class: `badge prio-${c.priority}`, text: c.priority }) : null),
    el("div", { class: "meters" },
      toneMeter(v.tone || [], v.tone_label, v.tone_trend),
      el("span", { class: `requests${requests ? " some" : ""}`, "data-requests": requests,
        text: requests === 1 ? "asked for a person once" : requests ? `asked for a person ${requests}×` : "no request for a person" }),
      el("span", { class: "elapsed", "data-since": c.outcome ? null : c.started_at,
        text: c.started_at ? clock((c.ended_at ? Date.parse(c.ended_at) : Date.now()) - Date.parse(c.started_at)) : "" })),
    list,
    el("div", { class: "call-foot" },
      el("span", { class: "muted", text: c.queue ? `→ ${c.queue} · ${words(c.reason)}` : "" }),
      el("a", { href: `#/call/${encodeURIComponent(c.call_sid)}`, text: c.queue ? "Open card" : "Open" })));
}

// A sparkline of tone per caller turn, -1 (angry) at the bottom, 1 at the top.
function toneMeter(history, label, trend) {
  const w = 84, h = 22;
  const pts = history.slice(-12);
  const x = (i) => pts.length < 2 ? w / 2 : (i * (w - 4)) / (pts.length - 1) + 2;
  const y = (t) => h / 2 - (Math.max(-1, Math.min(1, t)) * (h / 2 - 3));
  const last = pts.length ? pts[pts.length - 1] : 0;
  const colour = last <= -0.3 ? "#b3261e" : last < 0 ? "#b5651d" : "#2f7d4f";
  const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "tone per turn" },
    svg("line", { x1: 0, x2: w, y1: h / 2, y2: h / 2, stroke: "#ddd", "stroke-dasharray": "2 2" }),
    pts.length > 1 ? svg("polyline", { points: pts.map((t, i) => `${x(i)},${y(t)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2 }) : null,
    pts.length ? svg("circle", { cx: x(pts.length - 1), cy: y(last), r: 3, fill: colour }) : null);
  const text = label ? `${label}${trend && trend !== "steady" ? `, ${trend}` : ""}` : "tone: not heard yet";
  return el("span", { class: "tone" }, chart, el("span", { class: `label-${label || "none"}`, "data-tone": label || "", text }));
}

async function callView(main, sid) {
  main.append(el("p", { class: "muted", text: "Loading…" }));
  let call;
  try {
    call = await api(`/console/api/calls/${encodeURIComponent(sid)}`);
  } catch (e) {
    main.replaceChildren(el("p", { class: "error", text: `No such call (${sid}).` }));
    return;
  }
  renderCall(main, call);
  // A live call's card follows it: reload when the store has something new for it.
  app.listeners.add(async (ev) => {
    if (ev && ev.call_sid === sid && document.body.contains(main.firstChild)) {
      try { renderCall(main, await api(`/console/api/calls/${encodeURIComponent(sid)}`)); } catch (_) { /* keep */ }
    }
  });
}

function renderCall(main, call) {
  const card = call.handoff;
  const left = el("section", { class: "panel", id: "card" });
  const right = el("section", { class: "panel" });
  if (card) {
    const facts = Object.entries(card.facts || {}).filter(([, v]) => v !== null && v !== "");
    const s = card.sentiment || {};
    left.append(
      el("h1", {}, `${card.from || call.from || ""} → ${card.queue}`),
      el("p", { class: "summary", id: "summary", text: card.summary }),
      el("div", { class: "tags" },
        el("span", { class: `badge prio-${card.priority}`, id: "priority", text: `${card.priority} priority` }),
        el("span", { class: "badge", id: "reason", text: words(card.reason) }),
        card.intent ? el("span", { class: "badge", text: `about ${words(card.intent)}` }) : null,
        card.agent_requests ? el("span", { class: "badge", text: `asked for a person ${card.agent_requests}×` }) : null),
      el("h2", {}, "Facts"),
      facts.length
        ? el("div", { class: "facts", id: "facts" }, facts.map(([k, v]) => factBox(k, v)))
        : el("p", { class: "muted", text: "The caller gave no numbers." }),
      el("h2", {}, "Mood"),
      el("p", { class: "mood", id: "mood" },
        `${s.label || "unknown"}`, s.trend ? `, ${s.trend}` : "",
        typeof s.score === "number" ? el("span", { class: "muted", text: ` (score ${s.score.toFixed(2)})` }) : null),
      el("h2", {}, "What the agent hears"),
      el("p", { class: "spoken", id: "spoken", text: card.spoken_summary }),
      "speechSynthesis" in window
        ? el("button", { class: "ghost", type: "button", onclick: () => speak(card.spoken_summary) }, "▶ Play spoken summary")
        : null);
  } else {
    left.append(el("h1", {}, call.from || "Call"),
      el("p", { class: "muted", text: call.outcome ? `Ended: ${words(call.outcome)}. No handoff card: the caller was not transferred.` : "In progress: no handoff yet." }));
  }
  right.append(
    el("h2", {}, "Call"),
    el("dl", { class: "kv" },
      el("dt", {}, "caller"), el("dd", { text: call.from || "" }),
      el("dt", {}, "dialled"), el("dd", { text: call.to || "" }),
      el("dt", {}, "started"), el("dd", { text: when(call.started_at) }),
      el("dt", {}, "ended"), el("dd", { text: call.ended_at ? when(call.ended_at) : "still live" }),
      el("dt", {}, "outcome"), el("dd", { id: "outcome", text: words(call.outcome || "live") }),
      call.transfer ? [el("dt", {}, "transfer"), el("dd", { text: `${words(call.transfer.status)}${call.transfer.detail ? ` (${call.transfer.detail})` : ""}` })] : null),
    el("h2", {}, "Transcript"),
    el("ol", { class: "transcript", id: "transcript" }, (call.transcript || []).map((l) =>
      el("li", { class: l.speaker }, el("span", { class: "who", text: `${clock(l.t_ms)} · ${l.speaker === "caller" ? "caller" : "line"}` }), l.text))),
    el("h2", {}, "Decisions"),
    el("ol", { class: "transcript" }, (call.decisions || []).map((d) =>
      el("li", {}, el("span", { class: "who", text: `${clock(d.t_ms)} · ${words(d.decision)}` }), d.detail))),
    // A recorded call (WARMLINE_RECORD_CALLS) as a fixture zip: calls/<name>.toml + audio/<name>/.
    app.me && app.me.role === "admin" && call.ended_at
      ? el("p", {}, el("a", { class: "ghost", id: "export-fixture", download: "",
        href: `/console/api/calls/${encodeURIComponent(call.call_sid)}/fixture` }, "⬇ Export as fixture (recorded calls only)"))
      : null);
  main.replaceChildren(el("p", {}, el("a", { href: "#/live", text: "← Live" }), " · ", el("a", { href: "#/history", text: "History" })),
    el("div", { class: "card-view" }, left, right));
}

function factBox(key, value) {
  const v = String(value);
  return el("div", { class: "fact", "data-fact": key },
    el("div", { class: "k", text: words(key) }),
    el("div", { class: "v", text: v }),
    navigator.clipboard ? el("button", { class: "ghost", type: "button", onclick: (e) => {
      navigator.clipboard.writeText(v).then(() => { e.target.textContent = "copied"; });
    } }, "copy") : null);
}

function speak(text) {
  window.speechSynthesis.cancel();
  window.speechSynthesis.speak(new SpeechSynthesisUtterance(text));
}

function select(name, label, values, current) {
  return el("label", {}, label, el("select", { name },
    el("option", { value: "", text: "any" }),
    values.map((v) => el("option", { value: v, selected: v === current, text: words(v) }))));
}

async function historyView(main, _arg, params) {
  const form = el("form", { class: "filters", id: "filters" },
    el("label", {}, "Search transcripts", el("input", { type: "search", name: "q", value: params.get("q") || "", placeholder: "words or a number" })),
    select("outcome", "Outcome", OUTCOMES, params.get("outcome")),
    select("reason", "Reason", REASONS, params.get("reason")),
    select("queue", "Queue", QUEUES, params.get("queue")),
    select("priority", "Priority", PRIORITIES, params.get("priority")),
    el("label", {}, "From", el("input", { type: "date", name: "since", value: params.get("since") || "" })),
    el("label", {}, "To", el("input", { type: "date", name: "until", value: params.get("until") || "" })),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = `#/history?${q}`;
  });
  const result = el("div", { id: "results" }, el("p", { class: "muted", text: "Loading…" }));
  main.append(el("h1", {}, "History"), form, result);
  const q = new URLSearchParams(params);
  q.set("limit", "200");
  const { calls } = await api(`/console/api/calls?${q}`);
  const rows = calls.map((c) => el("tr", { class: "row", "data-call": c.call_sid,
    onclick: () => { location.hash = `#/call/${encodeURIComponent(c.call_sid)}`; } },
  el("td", { text: when(c.started_at) }),
  el("td", { text: c.from || "" }),
  el("td", { text: words(c.outcome || "live") }),
  el("td", { text: c.queue || "" }),
  el("td", { class: "hide-narrow", text: words(c.reason || "") }),
  el("td", { class: "hide-narrow", text: c.priority || "" })));
  result.replaceChildren(
    el("p", { class: "muted", id: "count", text: `${calls.length} call${calls.length === 1 ? "" : "s"}${calls.length === 200 ? " (newest 200)" : ""}` }),
    el("table", {},
      el("thead", {}, el("tr", {}, ["started", "caller", "outcome", "queue"].map((h) => el("th", { text: h })),
        el("th", { class: "hide-narrow", text: "reason" }), el("th", { class: "hide-narrow", text: "priority" }))),
      el("tbody", {}, rows)));
}

async function trendsView(main, _arg, params) {
  const days = Number(params.get("days") || 14);
  const picker = el("select", { onchange: (e) => { location.hash = `#/trends?days=${e.target.value}`; } },
    [1, 7, 14, 30, 90].map((d) => el("option", { value: d, selected: d === days, text: d === 1 ? "last 24 hours" : `last ${d} days` })));
  const charts = el("div", { class: "charts" });
  main.append(el("h1", {}, "Trends ", picker), charts);
  const t = await api(`/console/api/trends?days=${days}`);
  const buckets = timeline(t.bucket, days);
  for (const b of new Set(t.counts.map((c) => c.bucket))) if (!buckets.includes(b)) buckets.push(b);
  buckets.sort();
  const escalated = t.counts.filter((c) => c.reason);
  const reasons = [...new Set(escalated.map((c) => c.reason))].sort();
  const outcomes = [...new Set(t.counts.map((c) => c.outcome))].sort();
  const series = (rows, key, keys) => buckets.map((b) => keys.map((k) =>
    rows.filter((r) => r.bucket === b && r[key] === k).reduce((n, r) => n + r.calls, 0)));
  const label = (b) => t.bucket === "hour" ? `${b.slice(11, 13)}h` : b.slice(5);
  charts.append(
    chartPanel("Escalations by reason", stacked(buckets.map(label), series(escalated, "reason", reasons), reasons), reasons),
    chartPanel("Calls by outcome", stacked(buckets.map(label), series(t.counts, "outcome", outcomes), outcomes), outcomes),
    chartPanel("Decision latency (since start)", stacked(t.decision_latency.map((b) => latencyLabel(b.le)),
      t.decision_latency.map((b) => [b.count]), ["decisions"]), []),
    el("section", { class: "panel chart" }, el("h2", {}, "Overload handoffs (since start)"),
      el("p", { class: "big", id: "overload", text: String(t.overload_handoffs) }),
      el("p", { class: "muted", text: `${escalated.filter((c) => c.reason === "overload").reduce((n, c) => n + c.calls, 0)} in the stored records for this period` })));
}

// Every hour or day of the period, so quiet stretches show as gaps rather than vanish.
// Stored start times are UTC, and so are these.
function timeline(unit, days) {
  const step = unit === "hour" ? 3600e3 : 86400e3;
  const n = unit === "hour" ? days * 24 : days;
  const now = Date.now();
  const out = [];
  for (let i = n - 1; i >= 0; i--) out.push(new Date(now - i * step).toISOString().slice(0, unit === "hour" ? 13 : 10));
  return out;
}

function latencyLabel(le) {
  if (le === "+Inf") return "more";
  const s = Number(le);
  return s < 1 ? `${Math.round(s * 1000)}ms` : `${s}s`;
}

function chartPanel(title, chart, keys) {
  return el("section", { class: "panel chart" }, el("h2", {}, title), chart,
    keys.length ? el("div", { class: "legend" }, keys.map((k, i) => el("span", {}, legendSwatch(i), words(k)))) : null);
}

function legendSwatch(i) {
  const swatch = el("i");
  // Through the CSSOM: the page's CSP refuses style attributes in markup.
  swatch.style.background = PALETTE[i % PALETTE.length];
  return swatch;
}

// Stacked bars: one bar per label, one segment per series.
function stacked(labels, values, keys) {
  const W = 360, H = 180, pad = 24;
  const max = Math.max(1, ...values.map((v) => v.reduce((a, b) => a + b, 0)));
  const bw = labels.length ? (W - pad * 2) / labels.length : 0;
  const g = svg("svg", { viewBox: `0 0 ${W} ${H + 20}`, role: "img" },
    svg("line", { x1: pad, x2: W - pad, y1: H, y2: H, stroke: "#ccc" }),
    svg("text", { x: 2, y: 12, "font-size": 10, fill: "#66706b" }, String(max)));
  if (!labels.length) g.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#66706b", "font-size": 12 }, "no calls in this period"));
  labels.forEach((lab, i) => {
    let y = H;
    values[i].forEach((v, k) => {
      if (!v) return;
      const h = (v / max) * (H - 20);
      y -= h;
      g.append(svg("rect", { x: pad + i * bw + bw * 0.15, y, width: Math.max(1, bw * 0.7), height: h, fill: PALETTE[k % PALETTE.length] },
        svg("title", {}, `${lab}: ${keys[k] || ""} ${v}`)));
    });
    if (labels.length <= 8 || i % Math.ceil(labels.length / 8) === 0) {
      g.append(svg("text", { x: pad + i * bw + bw / 2, y: H + 14, "font-size": 9, "text-anchor": "middle", fill: "#66706b" }, lab));
    }
  });
  return g;
}

async function usersView(main) {
  const body = el("tbody");
  main.append(el("h1", {}, "Users"),
    el("p", { class: "muted", text: "People come from the [console] settings; ending sessions logs someone out everywhere." }),
    el("table", {}, el("thead", {}, el("tr", {}, ["name", "role", "sessions", ""].map((h) => el("th", { text: h })))), body));
  const { users } = await api("/console/api/users");
  body.append(...users.map((u) => el("tr", {},
    el("td", { text: u.name }), el("td", { text: u.role }), el("td", { text: String(u.sessions) }),
    el("td", {}, el("button", { class: "ghost", type: "button", onclick: async () => {
      await api(`/console/api/users/${encodeURIComponent(u.name)}/revoke`, { method: "POST", headers: { "X-CSRF-Token": app.me.csrf } });
      route();
    } }, "End sessions")))));
}

// ---------- start ----------

async function start() {
  app.me = await api("/console/api/me");
  document.getElementById("who").textContent = `${app.me.user} (${app.me.role})`;
  document.getElementById("csrf").value = app.me.csrf;
  for (const a of document.querySelectorAll(".admin-only")) a.hidden = app.me.role !== "admin";
  window.addEventListener("hashchange", route);
  connect();
  route();
}

start();
