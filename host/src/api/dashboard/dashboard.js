// Cairn status page: polls this node's API every second and renders it; no
// dependencies, nothing loaded from elsewhere. Everything from the server is
// put into the page with textContent, never as HTML (plugin names, events and
// addresses are data, not markup).
"use strict";
(() => {
  const POLL_MS = 1000;          // refresh period
  const FETCH_TIMEOUT_MS = 3000; // one poll request gives up after this
  const WINDOW_SCRAPES = 10;     // rates and percentiles over the last N scrapes (~10 s)
  const MAX_EVENTS = 200;        // events kept in the tail
  const EVENTS_RETRY_MS = 5000;  // wait before reconnecting the events stream
  const RTT_SAMPLES = 60;        // round trips kept for the page's own latency line
  const TOKEN_KEY = "cairn-token";

  const $ = (id) => document.getElementById(id);

  // ---- the bearer token: from #token=…, kept for this tab only -----------
  // The fragment is never sent to the server; it is also removed from the
  // address bar so that it does not end up in history, bookmarks or screenshots.
  function takeToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      try { sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1])); } catch (_) { /* storage off */ }
      history.replaceState(null, "", location.pathname + location.search);
      return decodeURIComponent(m[1]);
    }
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
  }
  const token = takeToken();

  function authHeaders(extra) {
    const h = Object.assign({}, extra);
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  const rtts = [];

  // GET `path` from this node with the token; throws HttpError on a non-2xx answer.
  async function get(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    const started = performance.now();
    try {
      const resp = await fetch(path, { headers: authHeaders(), cache: "no-store", signal: ctl.signal });
      const body = await resp.text();
      rtts.push(performance.now() - started);
      if (rtts.length > RTT_SAMPLES) rtts.shift();
      if (!resp.ok) {
        let msg = resp.status + " " + resp.statusText;
        try { const e = JSON.parse(body).error; msg = resp.status + " " + e.code + ": " + e.message; } catch (_) { /* not our JSON */ }
        throw new HttpError(resp.status, msg);
      }
      return body;
    } catch (e) {
      if (e.name === "AbortError") throw new HttpError(0, "no answer within " + FETCH_TIMEOUT_MS + " ms");
      if (e instanceof HttpError) throw e;
      throw new HttpError(0, "node unreachable");
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- small DOM helpers --------------------------------------------------
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    const tr = el("tr");
    for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
    return tr;
  }
  const td = (text, cls) => el("td", text, cls);
  const num = (text) => el("td", text, "num");
  const show = (v) => (v === null || v === undefined ? "—" : String(v));
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }
  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }
  const thousands = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en"));
  function rate(x) { return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2); }
  function duration(seconds) {
    if (!isFinite(seconds)) return "—";
    if (seconds >= 1) return seconds.toFixed(2) + " s";
    if (seconds >= 0.001) return (seconds * 1e3).toFixed(seconds >= 0.1 ? 0 : 1) + " ms";
    return (seconds * 1e6).toFixed(0) + " µs";
  }

  // ---- cluster ------------------------------------------------------------
  let leaderLinkShown = null;
  function renderCluster(c) {
    $("node-id").textContent = c.id;
    $("node-state").textContent = c.state;
    $("leader-id").textContent = show(c.leader_id);
    $("term").textContent = c.term;
    $("applied").textContent = show(c.last_applied);
    $("committed").textContent = show(c.committed);
    $("last-log").textContent = show(c.last_log_index);
    const leaderText = c.leader_id === null || c.leader_id === undefined ? " · no leader"
      : c.leader_id === c.id ? "" : " · leader " + c.leader_id;
    $("headline").textContent = "node " + c.id + " · " + c.state + leaderText + " · term " + c.term;
    const rows = c.members.map((m) => {
      const who = el("td");
      who.appendChild(el("span", m.id, "mono"));
      if (m.id === c.leader_id) { who.append(" "); who.appendChild(el("span", "leader", "badge leader")); }
      if (m.id === c.id) { who.append(" "); who.appendChild(el("span", "this node", "badge self")); }
      const lag = num(show(m.lag_entries));
      if (m.lag_entries > 1000) lag.className += " lag-bad"; else if (m.lag_entries > 0) lag.className += " lag-warn";
      const ack = m.id === c.id || m.last_ack_ms_ago === undefined ? "—" : m.last_ack_ms_ago + " ms ago";
      return row([who, td(m.addr, "mono"), td(m.role), num(show(m.matched_index)), lag, num(ack)]);
    });
    fill($("members").tBodies[0], rows);
    // Only the leader tracks how far each member got; elsewhere say so and link to it.
    const note = $("members-note");
    const tracked = c.members.some((m) => m.matched_index !== undefined);
    const leader = c.members.find((m) => m.id === c.leader_id);
    const key = tracked ? "leader" : leader ? leader.addr : "none";
    if (key !== leaderLinkShown) {
      leaderLinkShown = key;
      note.replaceChildren();
      if (!tracked && leader) {
        const behind = (c.committed ?? 0) - (c.last_applied ?? 0);
        note.append("Replication progress is tracked by the leader: open ");
        const a = el("a", "node " + leader.id + "'s page");
        a.href = location.protocol + "//" + leader.addr + "/" + (token ? "#token=" + encodeURIComponent(token) : "");
        note.appendChild(a);
        note.append(". This node applies " + (behind > 0 ? behind + " entries behind" : "all") + " of what it knows committed.");
      } else if (!tracked) {
        note.textContent = "No leader known: an election may be under way.";
      }
    }
    if (!tracked && leader) {
      // Keep the "behind" sentence current without rebuilding the link.
      const behind = (c.committed ?? 0) - (c.last_applied ?? 0);
      const last = note.lastChild;
      if (last && last.nodeType === Node.TEXT_NODE) {
        last.textContent = ". This node applies " + (behind > 0 ? behind + " entries behind" : "all") + " of what it knows committed.";
      }
    }
  }

  // ---- plugins ------------------------------------------------------------
  function renderPlugins(list) {
    const plugins = list.plugins || [];
    fill($("plugins").tBodies[0], plugins.map((p) => {
      const tr = row([
        td(p.name, "mono"), num(show(p.version)), num(bytes(p.size_bytes)), num(show(p.deployed_at_index)),
        num(thousands(p.fuel_per_call)), num(bytes(p.memory_limit_bytes)),
        td(p.sha256 ? p.sha256.slice(0, 8) + "…" : "—", "mono"),
      ]);
      tr.dataset.plugin = p.name;
      tr.title = p.sha256 || "";
      return tr;
    }));
    $("plugins-note").textContent = plugins.length ? "" : "No plugins deployed.";
    updateEventChoices(plugins.map((p) => p.name));
  }

  // ---- metrics: Prometheus or OpenMetrics text, parsed leniently ----------
  function parseLabels(s) {
    const out = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"/g;
    let m;
    while ((m = re.exec(s))) out[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    return out;
  }
  function parseMetrics(text) {
    const series = new Map(); // "name{labels}" -> {name, labels, value}
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line || line[0] === "#") continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const value = m[3] === "+Inf" ? Infinity : Number(m[3]);
      if (Number.isNaN(value)) continue;
      series.set(m[1] + "{" + (m[2] || "") + "}", { name: m[1], labels: parseLabels(m[2] || ""), value });
    }
    return series;
  }
  const labelText = (labels, skip) =>
    Object.keys(labels).filter((k) => k !== skip).sort().map((k) => k + "=" + labels[k]).join(", ");

  const scrapes = []; // [{at: ms, series: Map}]
  // Request counters: the names the node exports now (cairn_applies_total,
  // cairn_queries_total) and any later ones that count requests or calls.
  const REQUEST_COUNTER = /^cairn_.*(appl|quer|request|call).*_total$/;

  function renderMetrics(text) {
    scrapes.push({ at: performance.now(), series: parseMetrics(text) });
    while (scrapes.length > WINDOW_SCRAPES + 1) scrapes.shift();
    const now = scrapes[scrapes.length - 1];
    const then = scrapes[0];
    const secs = (now.at - then.at) / 1000;
    $("window").textContent = secs > 0 ? "over the last " + secs.toFixed(0) + " s" : "(measuring…)";
    const delta = (key, v) => {
      const old = then.series.get(key);
      // A counter that went down was reset (node restart): no rate this window.
      return old && v >= old.value ? v - old.value : null;
    };

    const rateRows = [];
    for (const [key, s] of now.series) {
      if (!REQUEST_COUNTER.test(s.name)) continue;
      const d = secs > 0 ? delta(key, s.value) : null;
      const name = s.name.replace(/^cairn_/, "").replace(/_total$/, "");
      const labels = labelText(s.labels);
      rateRows.push(row([td(labels ? name + " (" + labels + ")" : name, "mono"), num(d === null ? "—" : rate(d / secs)), num(thousands(s.value))]));
    }
    fill($("rates").tBodies[0], rateRows);

    // Latency histograms (`…_bucket{le="…"}`): percentiles of the requests in
    // the window, or since the node started when the window saw none.
    const groups = new Map();
    for (const [key, s] of now.series) {
      if (!s.name.endsWith("_bucket") || s.labels.le === undefined) continue;
      const base = s.name.slice(0, -"_bucket".length);
      const gkey = base + "{" + labelText(s.labels, "le") + "}";
      if (!groups.has(gkey)) groups.set(gkey, { base, labels: labelText(s.labels, "le"), buckets: [] });
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      groups.get(gkey).buckets.push({ le, total: s.value, recent: secs > 0 ? delta(key, s.value) : null });
    }
    const latRows = [];
    for (const g of [...groups.values()].sort((a, b) => (a.base + a.labels).localeCompare(b.base + b.labels))) {
      g.buckets.sort((a, b) => a.le - b.le);
      const recent = g.buckets.every((b) => b.recent !== null) ? g.buckets.map((b) => ({ le: b.le, n: b.recent })) : null;
      const recentCount = recent ? recent[recent.length - 1].n : 0;
      const use = recentCount > 0 ? recent : g.buckets.map((b) => ({ le: b.le, n: b.total }));
      const count = use[use.length - 1].n;
      if (count === 0) continue;
      const scale = /_seconds$/.test(g.base) ? 1 : /_(ms|milliseconds)$/.test(g.base) ? 1e-3 : /_(us|microseconds)$/.test(g.base) ? 1e-6 : null;
      const fmt = (v) => (v === Infinity ? "> " + fmtBound(use) : scale === null ? v.toPrecision(3) : duration(v * scale));
      const fmtBound = (bs) => { const f = bs.filter((b) => isFinite(b.le)); const v = f.length ? f[f.length - 1].le : 0; return scale === null ? String(v) : duration(v * scale); };
      const name = g.base.replace(/^cairn_/, "") + (g.labels ? " (" + g.labels + ")" : "");
      latRows.push(row([
        td(name + (recentCount > 0 ? "" : " · since start"), "mono"),
        num(recentCount > 0 ? rate(recentCount / secs) : "idle"),
        num(fmt(quantile(use, 0.5))), num(fmt(quantile(use, 0.9))), num(fmt(quantile(use, 0.99))),
      ]));
    }
    fill($("latency").tBodies[0], latRows);
    $("latency").hidden = latRows.length === 0;
    const sorted = [...rtts].sort((a, b) => a - b);
    const pick = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    $("latency-note").textContent = (latRows.length ? "" : "This node exports no latency histograms yet. ") +
      (sorted.length ? "This page's requests to the node: p50 " + duration(pick(0.5) / 1e3) + ", p99 " + duration(pick(0.99) / 1e3) + "." : "");
  }

  // The q-quantile of cumulative buckets [{le, n}], interpolated linearly
  // inside the bucket it falls in (as Prometheus' histogram_quantile does).
  function quantile(buckets, q) {
    const total = buckets[buckets.length - 1].n;
    const rank = q * total;
    let prevLe = 0, prevN = 0;
    for (const b of buckets) {
      if (b.n >= rank) {
        if (b.le === Infinity) return Infinity;
        const inBucket = b.n - prevN;
        return inBucket > 0 ? prevLe + (b.le - prevLe) * ((rank - prevN) / inBucket) : b.le;
      }
      prevLe = b.le; prevN = b.n;
    }
    return Infinity;
  }


  // ---- events: the SSE stream read with fetch, so the token goes in a header
  let watching;              // plugin name (null: none; undefined: not decided yet)
  let watchAbort = null;     // AbortController of the stream
  let lastEventId = null;    // resume point after a reconnect

  function updateEventChoices(names) {
    const select = $("events-plugin");
    const current = [...select.options].map((o) => o.value);
    if (current.join("\n") !== names.join("\n")) {
      select.replaceChildren(...names.map((n) => { const o = el("option", n); o.value = n; return o; }));
    }
    // Keep following the chosen plugin while it exists; otherwise the first one.
    const want = names.includes(watching) ? watching : (names[0] ?? null);
    if (want !== watching) watch(want);
    select.value = want ?? "";
  }
  $("events-plugin").addEventListener("change", (e) => watch(e.target.value || null));

  function eventsStatus(text) { $("events-status").textContent = text; }

  function watch(name) {
    if (watchAbort) watchAbort.abort();
    watchAbort = null;
    watching = name;
    lastEventId = null;
    $("events").replaceChildren();
    if (!name) { eventsStatus("no plugin to follow"); return; }
    const ctl = new AbortController();
    watchAbort = ctl;
    follow(name, ctl.signal);
  }

  const pause = (ms, signal) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });

  async function follow(name, signal) {
    while (!signal.aborted) {
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        const resp = await fetch("/v1/plugins/" + encodeURIComponent(name) + "/events", { headers, cache: "no-store", signal });
        const type = resp.headers.get("content-type") || "";
        if (resp.status === 410) {
          lastEventId = null; // retention dropped our resume point: start again
          throw new Error("410: older events were dropped; restarting");
        }
        if (!resp.ok || !type.startsWith("text/event-stream") || !resp.body) {
          throw new Error(String(resp.status));
        }
        eventsStatus("live");
        await readStream(resp.body, signal);
        if (!signal.aborted) eventsStatus("stream ended; reconnecting…");
      } catch (e) {
        if (signal.aborted) return;
        eventsStatus("events unavailable (" + (e.message || e) + "); retrying");
      }
      await pause(EVENTS_RETRY_MS, signal);
    }
  }

  // Server-Sent Events framing: `field: value` lines, a blank line ends an event.
  async function readStream(body, signal) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
    let buf = "";
    let ev = { id: null, event: "message", data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        if (line === "") {
          if (ev.data.length) addEvent(ev);
          ev = { id: null, event: "message", data: [] };
          continue;
        }
        if (line[0] === ":") continue; // heartbeat comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") { ev.id = val; lastEventId = val; }
        else if (field === "event") ev.event = val;
        else if (field === "data") ev.data.push(val);
      }
    }
  }

  function addEvent(ev) {
    let data = ev.data.join("\n");
    try { data = JSON.stringify(JSON.parse(data)); } catch (_) { /* not JSON: shown as sent */ }
    const li = el("li");
    li.append(el("span", ev.id || "", "mono"), el("span", ev.event, "mono"), el("span", data, "mono"));
    li.title = data;
    const list = $("events");
    list.insertBefore(li, list.firstChild);
    while (list.childElementCount > MAX_EVENTS) list.lastChild.remove();
  }

  // The parsers, for the browser test (tests/system/dashboard.rs).
  window.cairnStatus = { parseMetrics, quantile, readStream };

  // ---- the poll loop --------------------------------------------------------
  function banner(text) {
    const b = $("banner");
    b.hidden = !text;
    b.textContent = text || "";
  }

  async function poll() {
    const [cluster, plugins, metrics] = await Promise.allSettled([get("/v1/cluster"), get("/v1/plugins"), get("/metrics")]);
    const problems = [];
    const take = (what, r, render) => {
      if (r.status === "fulfilled") {
        try { render(r.value); } catch (e) { problems.push(what + ": " + e.message); }
      } else {
        problems.push(what + ": " + r.reason.message);
      }
    };
    take("cluster", cluster, (b) => renderCluster(JSON.parse(b)));
    take("plugins", plugins, (b) => renderPlugins(JSON.parse(b)));
    take("metrics", metrics, renderMetrics);
    const unauthorized = [cluster, plugins, metrics].some((r) => r.status === "rejected" && r.reason.status === 401);
    if (unauthorized) {
      banner("Unauthorized: open this page as /#token=YOUR_TOKEN (the token stays in this tab).");
    } else {
      banner(problems.length ? problems.join(" · ") : null);
    }
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  }

  // One poll at a time: the next starts a period after the last one finished.
  async function loop() {
    try { await poll(); } catch (e) { banner("page error: " + e.message); }
    setTimeout(loop, POLL_MS);
  }
  loop();
})();
