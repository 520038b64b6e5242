// multibridge dashboard: plain JavaScript, no dependencies. Every value read from the API is
// put into the page with textContent (registry names and locations are anyone's input).
"use strict";

const API = "/ui/api";
const REFRESH_MS = { overview: 2000, services: 5000, claims: 4000 };
const state = { page: null, timer: null, session: null, services: null };

// ------------------------------------------------------------------ DOM helpers
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "title") node.title = v;
    else if (k === "href") node.setAttribute("href", v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
function replace(container, ...nodes) {
  container.replaceChildren(...nodes.flat().filter((n) => n));
}
function $(id) { return document.getElementById(id); }

// ------------------------------------------------------------------ formatting
function short(hex, keep) {
  if (!hex) return "–";
  const s = String(hex);
  const k = keep || 6;
  return s.length > 2 * k + 4 ? `${s.slice(0, k + 2)}…${s.slice(-k)}` : s;
}
function mono(text, full) { return el("code", { title: full || text }, text); }
function ago(secs) {
  if (secs === null || secs === undefined) return "–";
  if (secs < 60) return `${secs}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m ${secs % 60}s`;
  return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
}
function when(unix) {
  if (!unix) return "–";
  return new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}
function big(value) {
  try { return BigInt(value); } catch (_) { return null; }
}
function coins(value) {
  const v = big(value);
  if (v === null) return String(value);
  const unit = 10n ** 18n;
  if (v !== 0n && v < 10n ** 12n) return `${v} wei`;
  const whole = v / unit;
  let frac = (v % unit).toString().padStart(18, "0").replace(/0+$/, "");
  if (frac.length > 6) frac = frac.slice(0, 6) + "…";
  return frac ? `${whole}.${frac}` : `${whole}`;
}
/** What a request moves: coins, or an ERC-721's id. */
function amountText(r) { return r.kind === "erc721" ? `NFT #${r.amount}` : coins(r.amount); }
function seconds(v) { return v === null || v === undefined ? "–" : `${v.toFixed(v < 10 ? 2 : 1)} s`; }
function laneName(lane) { return lane === "main-to-service" ? "main → service" : lane === "service-to-main" ? "service → main" : lane; }
function safeLink(url) {
  // Only http(s) becomes a link; anything else stays text.
  return /^https?:\/\/[^\s]+$/.test(url || "") ? el("a", { href: url, rel: "noopener noreferrer" }, url) : el("span", {}, url || "–");
}
function stat(label, value, key, lane, extraClass) {
  return el("div", { class: `stat ${extraClass || ""}` },
    el("div", { class: "stat-label" }, label),
    el("div", { class: "stat-value", "data-k": key, "data-lane": lane }, value === null || value === undefined ? "–" : String(value)));
}
function table(headers, rows, attrs) {
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

// ------------------------------------------------------------------ API
async function api(path, options) {
  const opts = Object.assign({ headers: {}, credentials: "same-origin" }, options || {});
  if (opts.body !== undefined) {
    opts.method = opts.method || "POST";
    opts.headers["content-type"] = "application/json";
    opts.body = JSON.stringify(opts.body);
    if (state.session && state.session.csrf) opts.headers["x-csrf-token"] = state.session.csrf;
  }
  let response;
  try {
    response = await fetch(API + path, opts);
  } catch (_) {
    throw new Error("the relay does not answer (is it running?)");
  }
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `the relay answered ${response.status}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}
function banner(message) {
  const b = $("banner");
  if (!message) { b.classList.add("hidden"); b.textContent = ""; return; }
  b.textContent = message;
  b.classList.remove("hidden");
}

// ------------------------------------------------------------------ charts (inline SVG)
function timelineChart(samples, lane) {
  const W = 560, H = 170, L = 44, R = 10, T = 12, B = 26;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "data-chart": "timeline", "data-lane": lane });
  root.append(svg("title", {}, `Requests, handled and pending over time, ${laneName(lane)}`));
  if (!samples || samples.length < 2) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" }, "collecting samples…"));
    return root;
  }
  const t0 = samples[0].t, t1 = samples[samples.length - 1].t;
  const maxY = Math.max(1, ...samples.map((s) => s.requests));
  const minY = Math.min(...samples.map((s) => Math.min(s.lower, s.pending)));
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - Math.min(0, minY)) / Math.max(1, maxY - Math.min(0, minY))) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = Math.round((maxY * i) / 4);
    root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, v));
  }
  root.append(svg("text", { x: L, y: H - 6, class: "axis" }, when(t0).slice(11, 19)));
  root.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "axis" }, when(t1).slice(11, 19)));
  const line = (key, cls) => svg("polyline", { class: cls, points: samples.map((s) => `${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`).join(" ") });
  // Pending as an area.
  const area = `${x(t0)},${y(0)} ` + samples.map((s) => `${x(s.t).toFixed(1)},${y(s.pending).toFixed(1)}`).join(" ") + ` ${x(t1)},${y(0)}`;
  root.append(svg("polygon", { class: "area-pending", points: area }));
  root.append(line("requests", "line-requests"));
  root.append(line("lower", "line-handled"));
  const legend = svg("g", { class: "legend" });
  [["requests", "line-requests"], ["handled (lower nonce)", "line-handled"], ["pending", "area-pending"]].forEach(([name, cls], i) => {
    legend.append(svg("rect", { x: L + 8 + i * 150, y: T, width: 10, height: 10, class: cls + "-key" }));
    legend.append(svg("text", { x: L + 22 + i * 150, y: T + 9, class: "axis" }, name));
  });
  root.append(legend);
  return root;
}

function histogramChart(latency, lane) {
  const W = 560, H = 170, L = 36, R = 10, T = 12, B = 30;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "data-chart": "latency", "data-lane": lane });
  root.append(svg("title", {}, `Latency histogram, ${laneName(lane)}`));
  const buckets = (latency && latency.buckets) || [];
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const bw = (W - L - R) / Math.max(1, buckets.length);
  for (let i = 0; i <= 2; i++) {
    const v = Math.round((max * i) / 2);
    const yy = T + (1 - v / max) * (H - T - B);
    root.append(svg("line", { x1: L, x2: W - R, y1: yy, y2: yy, class: "grid" }));
    root.append(svg("text", { x: L - 6, y: yy + 4, "text-anchor": "end", class: "axis" }, v));
  }
  buckets.forEach((b, i) => {
    const h = (b.count / max) * (H - T - B);
    const bar = svg("rect", { x: L + i * bw + 3, y: H - B - h, width: Math.max(1, bw - 6), height: h, class: "bar", "data-count": b.count });
    bar.append(svg("title", {}, `${b.count} handled ${b.le === null ? "after the last bound" : "within " + b.le + " s"}`));
    root.append(bar);
    root.append(svg("text", { x: L + i * bw + bw / 2, y: H - B + 14, "text-anchor": "middle", class: "axis" }, b.le === null ? "more" : `≤${b.le}s`));
  });
  if (!latency || latency.count === 0) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" }, "no handle scanned yet"));
  }
  return root;
}

// ------------------------------------------------------------------ overview
function electionTable(lane, elections) {
  if (!elections || elections.length === 0) return el("p", { class: "muted" }, "Standalone relay (no etcd): this replica is the lane's only voter.");
  const rows = [];
  for (const e of elections) {
    const leader = e.leader;
    const ops = e.operators.map((o) => short(o)).join(", ");
    const head = el("tr", { class: e.own ? "own" : "", "data-operator": e.operators[0] },
      el("td", {}, mono(ops, e.operators.join(", ")), e.own ? el("span", { class: "tag" }, "this operator") : null),
      el("td", { "data-k": "leader" }, leader ? leader.replica : el("span", { class: "bad" }, e.error ? "etcd not readable" : "no leader")),
      el("td", {}, leader ? safeLink(leader.url) : "–"),
      el("td", {}, leader && leader.lease ? mono(leader.lease) : "–"),
      el("td", { "data-k": "lease_ttl" }, leader && leader.lease_ttl_secs !== null && leader.lease_ttl_secs !== undefined ? `${leader.lease_ttl_secs}s` : "–"),
      el("td", {}, e.replicas.map((r) => el("div", { class: "replica", "data-replica": r.replica },
        el("span", { class: r.leader ? "dot dot-lead" : "dot" }), `${r.replica} `,
        el("span", { class: "muted" }, `nonce ${r.latest_nonce === null ? "–" : r.latest_nonce} · handled ${r.handled} · lag `),
        el("span", { class: r.lag > 0 ? "warn" : "ok", "data-k": "lag" }, String(r.lag)),
        el("span", { class: "muted" }, ` · ${ago(r.age_secs)} ago`)))));
    rows.push(head);
  }
  return table(["operator", "leading replica", "its URL", "lease", "lease left", "replicas (progress, lag)"], rows, { class: "elections", "data-lane": lane });
}

function ownLeaderUrl(l) {
  const own = (l.elections || []).find((e) => e.own);
  return own && own.leader ? own.leader.url : null;
}

function laneCard(l) {
  const s = l.status || {};
  const lane = l.lane;
  const waiting = (s.waiting || []).map((w) => el("tr", { "data-reason": w.reason },
    el("td", {}, w.reason), el("td", { "data-k": "waiting_requests" }, String(w.requests)), el("td", {}, String(w.first_nonce)), el("td", { class: "detail" }, w.detail || "–")));
  const rejected = (s.rejected || []).map((w) => el("tr", { class: "bad-row" },
    el("td", {}, `set aside: ${w.reason}`), el("td", {}, String(w.requests)), el("td", {}, String(w.first_nonce)), el("td", { class: "detail" }, w.detail || "–")));
  const conservation = Object.entries(l.conservation || {}).map(([asset, c]) => el("tr", { "data-asset": asset },
    el("td", {}, asset === "native" ? "native coin" : mono(short(asset), asset)),
    el("td", { class: "num" }, coins(c.requested)), el("td", { class: "num" }, coins(c.released)),
    el("td", { class: c.ok ? "ok" : "bad", "data-k": "conservation_ok" }, c.ok ? "✓ holds" : "✗ BROKEN")));
  const missing = (s.missing_votes || []).filter((m) => m.requests > 0).map((m) => el("tr", { class: "bad-row", "data-operator": m.operator },
    el("td", {}, mono(short(m.operator), m.operator)), el("td", { "data-k": "missing_votes" }, String(m.requests)), el("td", {}, ago(m.oldest_secs)),
    el("td", { class: "detail" }, m.nonces.join(", ") + (m.requests > m.nonces.length ? ", …" : ""))));
  const lat = l.latency || {};
  return el("article", { class: "card lane", "data-lane": lane },
    el("h2", {}, laneName(lane), s.leader === true ? el("span", { class: "tag tag-lead" }, "this replica leads") : s.leader === false ? el("span", { class: "tag" }, "this replica follows") : null),
    el("div", { class: "stats" },
      stat(`${l.source} head`, l.source_head, "source_head", lane),
      stat(`${l.destination} head`, l.destination_head, "destination_head", lane),
      stat("request nonce", s.request_nonce, "request_nonce", lane),
      stat("lower handle nonce", s.lower_handle_nonce, "lower_handle_nonce", lane),
      stat("upper handle nonce", s.upper_handle_nonce, "upper_handle_nonce", lane),
      stat("pending", s.pending, "pending", lane, s.pending > 0 ? "warn" : ""),
      stat("oldest pending", !s.pending || s.oldest_pending_age_secs === null || s.oldest_pending_age_secs === undefined ? "–" : ago(s.oldest_pending_age_secs), "oldest_pending_age", lane),
      stat("latency p50 / p90 / p99", `${seconds(lat.p50)} / ${seconds(lat.p90)} / ${seconds(lat.p99)}`, "latency", lane)),
    (s.sending_paused || []).length ? el("p", { class: "bad" }, `sending paused: ${s.sending_paused.join(", ")}`) : null,
    el("div", { class: "charts" },
      el("figure", {}, timelineChart(l.timeline, lane), el("figcaption", {}, "Requests, handled and pending (last hour, sampled every 5 s)")),
      el("figure", {}, histogramChart(lat, lane), el("figcaption", {}, `Request block to handle block (chain timestamps), ${lat.count || 0} handles since this relay started`))),
    el("h3", {}, "Waiting requests"),
    s.leader === false ? el("p", { class: "muted" }, "This replica follows: the waiting reasons are the leading replica's to know",
      ownLeaderUrl(l) ? el("span", {}, " (", safeLink(ownLeaderUrl(l)), ")") : null, ".") : null,
    waiting.length || rejected.length
      ? table(["reason", "requests", "first nonce", "what the destination said"], [...waiting, ...rejected], { "data-lane": lane, class: "waiting" })
      : el("p", { class: "muted", "data-k": "no_waiting", "data-lane": lane }, "Nothing waits on a destination condition."),
    el("h3", {}, "Missing votes"),
    missing.length
      ? table(["operator", "open requests without its vote", "oldest", "nonces"], missing, { "data-lane": lane, class: "missing" })
      : el("p", { class: "muted", "data-k": "no_missing_votes", "data-lane": lane }, "Every operator has voted every request open longer than 15 s."),
    el("h3", {}, "Conservation per asset"),
    conservation.length ? table(["asset", "requested on the source", "released on the destination", ""], conservation) : el("p", { class: "muted" }, "No transfer scanned yet."),
    el("h3", {}, "Leaders and replicas"),
    electionTable(lane, l.elections));
}

// A relay serving several bridge pairs: one page per pair, the selector goes to the others'.
function pairSelector(data) {
  const select = $("pair-select");
  if (!Array.isArray(data.pairs) || data.pairs.length < 2) return;
  if (select.options.length !== data.pairs.length) {
    replace(select, data.pairs.map((p) =>
      el("option", { value: p.url }, `${p.name} (${p.main_chain_id} ⇄ ${p.service_chain_id})`)));
  }
  for (const o of select.options) o.selected = o.textContent.startsWith(`${data.pair_name} (`);
  select.classList.remove("hidden");
}

async function loadOverview() {
  const data = await api("/overview");
  pairSelector(data);
  const notReady = Object.entries((data.readiness && data.readiness.components) || {}).filter(([, c]) => !c.ready).map(([n]) => n);
  replace($("overview-meta"),
    el("span", {}, "operator "), mono(short(data.operator), data.operator),
    el("span", {}, " · replica "), el("strong", {}, data.replica),
    el("span", {}, ` · updated ${when(data.generated_at).slice(11)}`),
    notReady.length ? el("span", { class: "bad" }, ` · not ready: ${notReady.join(", ")}`) : el("span", { class: "ok" }, " · ready"));
  replace($("overview-body"), data.lanes.map(laneCard));
}

// ------------------------------------------------------------------ services
async function loadServices() {
  const data = await api("/services");
  state.services = data;
  if (!data.registry) {
    replace($("services-body"), el("p", { class: "muted" }, "This relay has no [registry] configured."));
    return;
  }
  replace($("services-meta"), el("span", {}, "registry "), mono(short(data.registry), data.registry),
    el("span", {}, " · writes as "), data.manager ? mono(short(data.manager), data.manager) : "–",
    data.can_send ? el("span", { class: "ok" }, " · this replica can send") : el("span", { class: "warn" }, " · this replica does not send now (another replica leads)"));
  const rows = data.services.map((s) => el("tr", { "data-service": s.id, class: s.own ? "own" : "" },
    el("td", {}, el("div", {}, s.name), mono(short(s.id, 8), s.id)),
    el("td", {}, laneName(s.lane)),
    el("td", { "data-k": "operator" }, mono(short(s.operator), s.operator), s.own ? el("span", { class: "tag" }, "this operator") : null,
      s.bridge_operator ? null : el("div", { class: "bad", title: "claims against it reach no relay that votes" }, "not an operator of this bridge")),
    el("td", { "data-k": "location" }, safeLink(s.location), el("div", { class: "muted" }, `updated ${when(s.updated_at)}`)),
    el("td", {}, s.managers.map((m) => el("div", {}, mono(short(m), m))) ),
    el("td", { "data-k": "leader" }, s.leader ? el("div", {}, s.leader.replica, el("div", { class: "muted" }, s.leader.url)) : "–"),
    el("td", { "data-k": "lagging" }, s.lagging ? el("span", { class: "bad", title: "the registry's location is not the leader's URL" }, "⚠ registry lags the leader") : s.leader ? el("span", { class: "ok" }, "in sync") : "–")));
  replace($("services-body"),
    rows.length ? table(["service", "lane", "operator", "location", "managers", "leader (etcd)", "registry vs leader"], rows, { id: "services-table" }) : el("p", { class: "muted" }, "No lane service of this pair is registered."),
    data.unregistered_lanes.length ? el("p", { class: "warn" }, `This operator has no service for: ${data.unregistered_lanes.map(laneName).join(", ")}.`) : null,
    data.managers_complete ? null : el("p", { class: "muted" }, "Still reading the managers' history…"));
  // Keep the chosen service selected across refreshes.
  const select = $("location-id");
  const chosen = select.value;
  const manageable = data.services.filter((s) => s.manageable);
  replace(select, manageable.length ? manageable.map((s) => el("option", { value: s.id }, `${s.name} · ${laneName(s.lane)} · ${short(s.id, 6)}`)) : [el("option", { value: "" }, "no service the manager key manages")]);
  if (manageable.some((s) => s.id === chosen)) select.value = chosen;
}

async function loadSession() {
  try {
    state.session = await api("/session");
  } catch (_) {
    state.session = { writable: false, logged_in: false };
  }
  const s = state.session;
  const who = $("who");
  if (!s.writable) {
    replace(who, el("span", { class: "muted", "data-k": "session" }, "read-only"));
  } else if (s.logged_in) {
    const out = el("button", { class: "link", id: "logout" }, "log out");
    out.addEventListener("click", async () => { await api("/logout", { body: {} }).catch(() => {}); await loadSession(); });
    replace(who, el("span", { "data-k": "session" }, "admin"), " · ", out);
  } else {
    replace(who, el("a", { href: "#/services", "data-k": "session" }, "log in"));
  }
  const canWrite = s.writable && s.logged_in;
  $("login-form").classList.toggle("hidden", !s.writable || s.logged_in);
  for (const id of ["register-form", "location-form"]) {
    for (const input of $(id).querySelectorAll("input, select, button")) input.disabled = !canWrite;
  }
  $("register-help").textContent = !s.writable
    ? "Read-only: this relay has no admin token."
    : !s.logged_in ? "Log in to register." : `Registers the lane service of ${s.manager || "the manager key"} for this bridge pair (registerBridgeService).`;
}

function formResult(id, ok, message, extra) {
  replace($(id), el("span", { class: ok ? "ok" : "bad" }, message), extra || null);
}

async function submitWrite(form, resultId, path, body) {
  const button = form.querySelector("button");
  button.disabled = true;
  formResult(resultId, true, "sending… (waits for the receipt)");
  try {
    const r = await api(path, { body });
    formResult(resultId, true, `done in block ${r.block}: `, mono(short(r.tx, 8), r.tx));
    await loadServices().catch(() => {});
  } catch (e) {
    formResult(resultId, false, e.message);
    if (e.status === 401) await loadSession();
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ claims
async function loadClaims() {
  const data = await api("/claims?limit=200");
  replace($("claims-meta"), `${data.total} claim(s), ${data.open} open · scanned to main block ${data.scanned_to_block === null ? "–" : data.scanned_to_block}`);
  const rows = data.claims.map((c) => el("tr", { "data-claim": `${c.tx_hash}:${c.log_index}`, "data-lane": c.lane, "data-nonce": c.nonce },
    el("td", {}, when(c.filed_at), el("div", { class: "muted" }, `block ${c.block}`)),
    el("td", {}, laneName(c.lane)),
    el("td", {}, el("a", { href: `#/track?lane=${encodeURIComponent(c.lane)}&nonce=${encodeURIComponent(c.nonce)}` }, `#${c.nonce}`)),
    el("td", {}, mono(short(c.claimant), c.claimant)),
    el("td", {}, mono(short(c.operator), c.operator), el("div", { class: "muted" }, c.location)),
    el("td", { "data-k": "resolved" }, c.resolved_at
      ? el("span", { class: "ok" }, `✓ handled ${when(c.resolved_at)}`)
      : el("span", { class: "warn" }, "open")),
    el("td", {}, c.handle_tx ? mono(short(c.handle_tx), c.handle_tx) : "–")));
  replace($("claims-body"), rows.length
    ? table(["filed", "lane", "request", "claimant", "against (operator, location then)", "resolved", "handle"], rows, { id: "claims-table" })
    : el("p", { class: "muted", id: "no-claims" }, "No claim was filed against this pair's services."));
}

// ------------------------------------------------------------------ tracker
function trackedCard(t) {
  const r = t.request;
  const votes = t.votes.map((v) => el("tr", { "data-operator": v.operator },
    el("td", {}, mono(short(v.operator), v.operator)),
    el("td", { "data-k": "voted", class: v.voted ? "ok" : "muted" }, v.voted ? "✓ voted" : "not yet"),
    el("td", {}, v.at ? mono(short(v.at.tx), v.at.tx) : "–"),
    el("td", {}, v.at ? `${v.at.block} · ${when(v.at.time)}` : "–")));
  const stateText = {
    handled: "Handled: the transfer executed on the destination.",
    confirming: `Waiting for ${r.confirmations_left} more source block(s) before the relays act on it.`,
    waiting: "Waiting on the destination: it proceeds by itself once the condition clears.",
    rejected: "Set aside by this relay: a person must look at it.",
    pending: "Pending: the relays have not executed it yet.",
    overdue: "Overdue: older than the relays normally need.",
    release_queued: "Executed; the destination holds the release back for its delay.",
    cancelled: "Cancelled on the destination: its refund on the source is on its way.",
    refunded: "Refunded: cancelled on the destination and paid back to the requester on the source.",
  }[t.state] || t.state;
  const voted = t.votes.filter((v) => v.voted).length;
  const a = t.attestation;
  const attested = a && (a.attested_lane || a.signers.length > 0);
  return el("article", { class: "card tracked", "data-state": t.state, "data-lane": t.lane, "data-nonce": t.nonce },
    el("h2", {}, `${laneName(t.lane)} · request #${t.nonce}`, el("span", { class: `tag tag-${t.state}`, "data-k": "state" }, t.state)),
    el("p", { class: ["handled", "refunded"].includes(t.state) ? "ok" : t.stuck ? "bad" : "warn" }, stateText),
    el("div", { class: "next", "data-k": "next" },
      el("strong", {}, "Next: "), t.next,
      t.eta ? el("span", { "data-k": "eta" }, ` (expected ${when(t.eta)})`) : null,
      t.command && t.command !== t.claim_command ? el("pre", { "data-k": "command" }, t.command) : null),
    t.reason ? el("div", { class: "reason", "data-k": "reason" },
      el("strong", {}, `Why: ${t.reason.name}`), t.reason.detail ? el("div", { class: "detail" }, t.reason.detail) : null) : null,
    !t.reason && t.state !== "handled" && t.leading_replica_url ? el("p", { class: "muted", "data-k": "leader_hint" },
      "This replica does not vote on the lane now; the leading replica knows why it waits: ",
      safeLink(`${t.leading_replica_url.replace(/\/$/, "")}/#/track?lane=${encodeURIComponent(t.lane)}&nonce=${encodeURIComponent(t.nonce)}`)) : null,
    el("div", { class: "stats" },
      stat(r.kind === "erc721" ? "token" : "amount", amountText(r), "amount", t.lane),
      stat("from", short(r.from), "from", t.lane),
      stat("to", short(r.to), "to", t.lane),
      attested
        ? stat("signatures", a.signers.length ? `${a.signers.length} of ${t.threshold} needed` : `– of ${t.threshold} needed`, "signatures", t.lane)
        : stat("votes", `${voted} of ${t.threshold} needed`, "votes", t.lane),
      stat("latency", t.latency_secs === null ? "–" : `${t.latency_secs} s`, "latency_secs", t.lane),
      stat("age", ago(t.age_secs), "age", t.lane)),
    el("h3", {}, "Request"),
    el("p", {}, "source transaction ", mono(r.tx), ` · block ${r.block} · ${when(r.time)}`, r.token !== "0x0000000000000000000000000000000000000000" ? el("span", {}, " · token ", mono(short(r.token), r.token)) : " · native coin"),
    t.same_tx_nonces.length ? el("p", { class: "muted" }, `The same transaction also made request(s) ${t.same_tx_nonces.map((n) => "#" + n).join(", ")}.`) : null,
    attested ? el("div", { "data-k": "attestation" },
      el("h3", {}, "Attested batch"),
      a.signers.length
        ? el("p", {}, "signed by ", ...a.signers.map((s) => el("span", { "data-k": "signer" }, mono(short(s), s), " ")),
          a.sent_by ? el("span", {}, "· sent by ", mono(short(a.sent_by), a.sent_by)) : null)
        : el("p", { class: "muted" }, "The operators sign its batch once its source block is confirmed; the relay's /status lists who signed so far."),
      t.state !== "handled" ? el("p", {}, "Do not want to wait for the operators to send it? Send it with your own key:") : null,
      t.state !== "handled" ? el("pre", { "data-k": "execute_command" }, a.execute_command) : null)
      : el("div", {}, el("h3", {}, "Votes"),
        table(["operator", "vote", "transaction", "block"], votes, { class: "votes" })),
    el("h3", {}, "Handle"),
    t.handle ? el("p", { "data-k": "handle" }, "executed in ", mono(t.handle.tx), ` · block ${t.handle.block} · ${when(t.handle.time)}`) : el("p", { class: "muted", "data-k": "handle" }, "not executed yet"),
    t.stuck ? el("div", { class: "claim-box" },
      el("h3", {}, "Stuck? File a claim"),
      el("p", {}, "A claim in the service registry makes every operator that has not voted re-send this transfer at once:"),
      el("pre", { "data-k": "claim_command" }, t.claim_command)) : null,
    t.claims.length ? el("div", {}, el("h3", {}, "Claims filed for it"),
      el("ul", {}, t.claims.map((c) => el("li", {}, `${when(c.filed_at)} by `, mono(short(c.claimant), c.claimant), c.resolved_at ? el("span", { class: "ok" }, " · resolved") : el("span", { class: "warn" }, " · open"))))) : null);
}

function addressCard(a) {
  const rows = a.requests.map((r) => el("tr", {},
    el("td", {}, laneName(r.lane)),
    el("td", {}, el("a", { href: `#/track?lane=${encodeURIComponent(r.lane)}&nonce=${encodeURIComponent(r.nonce)}` }, `#${r.nonce}`)),
    el("td", {}, mono(short(r.tx), r.tx)),
    el("td", {}, mono(short(r.from), r.from)), el("td", {}, mono(short(r.to), r.to)),
    el("td", { class: "num" }, amountText(r)),
    el("td", { class: r.handled ? "ok" : "warn" }, r.handled ? "handled" : "not yet")));
  return el("article", { class: "card" }, el("h2", {}, "Transfers of ", mono(a.address)),
    table(["lane", "request", "transaction", "from", "to", "amount", ""], rows));
}

async function runTrack(params) {
  const out = $("track-result");
  replace(out, el("p", { class: "muted" }, "Looking it up…"));
  try {
    const data = await api(`/track?${new URLSearchParams(params).toString()}`);
    replace(out, data.kind === "transfer" ? trackedCard(data) : addressCard(data));
  } catch (e) {
    replace(out, el("div", { class: "card error", role: "alert", id: "track-error" }, e.message));
  }
}

// ------------------------------------------------------------------ routing
const LOADERS = { overview: loadOverview, services: loadServices, claims: loadClaims };

async function refresh() {
  const page = state.page;
  const loader = LOADERS[page];
  if (!loader) return;
  try {
    await loader();
    banner(null);
  } catch (e) {
    banner(e.message);
  }
  if (state.page === page) state.timer = setTimeout(refresh, REFRESH_MS[page]);
}

function route() {
  const hash = location.hash || "#/overview";
  const [path, query] = hash.slice(2).split("?");
  const page = ["overview", "services", "claims", "track"].includes(path) ? path : "overview";
  clearTimeout(state.timer);
  state.page = page;
  for (const p of document.querySelectorAll(".page")) p.classList.toggle("hidden", p.id !== `page-${page}`);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  if (page === "track") {
    banner(null);
    const params = Object.fromEntries(new URLSearchParams(query || ""));
    if (params.lane !== undefined && params.nonce !== undefined) {
      $("track-lane").value = params.lane;
      $("track-nonce").value = params.nonce;
      runTrack({ lane: params.lane, nonce: params.nonce });
    } else if (params.q) {
      $("track-q").value = params.q;
      runTrack({ q: params.q });
    }
    return;
  }
  if (page === "services") loadSession();
  refresh();
}

function setup() {
  $("pair-select").addEventListener("change", (ev) => {
    location.href = `${ev.target.value.replace(/\/$/, "")}/${location.hash}`;
  });
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("/login", { body: { token: $("login-token").value } });
      $("login-token").value = "";
      state.session = Object.assign(state.session || {}, { csrf: r.csrf });
      formResult("login-result", true, "logged in");
    } catch (e) {
      formResult("login-result", false, e.message);
    }
    await loadSession();
  });
  $("register-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitWrite(ev.target, "register-result", "/services", {
      lane: $("register-lane").value, name: $("register-name").value, location: $("register-location").value,
    });
  });
  $("location-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitWrite(ev.target, "location-result", "/services/location", { id: $("location-id").value, location: $("location-value").value });
  });
  $("track-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("track-q").value.trim();
    const target = `#/track?q=${encodeURIComponent(q)}`;
    // A new hash runs the lookup through the router; the same hash again does not change.
    if (location.hash === target) runTrack({ q });
    else location.hash = target;
  });
  $("track-nonce-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    runTrack({ lane: $("track-lane").value, nonce: $("track-nonce").value.trim() });
  });
  window.addEventListener("hashchange", route);
  loadSession();
  route();
}

document.addEventListener("DOMContentLoaded", setup);
