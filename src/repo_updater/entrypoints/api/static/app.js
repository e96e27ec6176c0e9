// repo-updater dashboard: a page per batch change and a services page, drawn from the JSON API
// (/openapi.json documents it). No build step, no framework, nothing from the internet.
// It polls GET /api/pulse every POLL_MS and re-reads the page's data only when it changed, so
// a flip appears without a reload. Text from the API goes into the page as text, never HTML.
"use strict";

const POLL_MS = 2000;
const PAGE_SIZE = 50; // changesets per page; `?per_page=N` after the hash route overrides it
// Bands of the burndown, bottom to top (the API's burndown.states has the same order).
const STATES = ["UNSYNCED", "DRAFT", "OPEN", "READONLY", "CLOSED", "DELETED", "MERGED"];
const COLORS = {
  UNSYNCED: "#afb8c1", DRAFT: "#8c959f", OPEN: "#1a7f37", READONLY: "#d4a72c",
  CLOSED: "#cf222e", DELETED: "#57606a", MERGED: "#8250df",
};

// The services table: one entry per column. A column marked `optional` shows only when the
// API gives the field (webhook health: the last delivery that verified, the last refusal).
const SERVICE_COLUMNS = [
  { key: "name", label: "Service" },
  { key: "kind", label: "Kind" },
  { key: "repo_count", label: "Repos", num: true },
  { key: "last_success_at", label: "Last success", time: true },
  { key: "last_sync_at", label: "Last sync", time: true },
  { key: "next_sync_at", label: "Next sync", time: true },
  { key: "sync_failures", label: "Failures", num: true },
  { key: "webhook_last_delivery_at", label: "Last webhook", time: true, optional: true },
  { key: "webhook_last_rejection", label: "Webhook refused", optional: true, error: true },
  { key: "last_sync_error", label: "Last error", error: true },
];

let view = null; // { render(), refresh() } of the page shown
let pulse = null; // the last /api/pulse answer
let lastUpdate = null;
let routeGen = 0; // bumped on each navigation: a late answer for the page left is dropped

// --- small helpers --------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "onclick") el.addEventListener("click", v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// "3 min ago", "in 2 h", "just now"; the exact time is in the element's title.
function relative(iso) {
  if (!iso) return "";
  let s = (Date.now() - Date.parse(iso)) / 1000;
  const ahead = s < 0;
  s = Math.abs(s);
  if (s < 5) return "just now";
  const units = [[31536000, "y"], [86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
  for (const [size, unit] of units) {
    if (s >= size) {
      const n = `${Math.floor(s / size)} ${unit}`;
      return ahead ? `in ${n}` : `${n} ago`;
    }
  }
  return "just now";
}

function time(iso) {
  return h("time", { datetime: iso || null, title: iso ? new Date(iso).toLocaleString() : null },
    relative(iso));
}

function safeUrl(url) {
  return /^https?:\/\//i.test(url || "") ? url : null;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    location.href = "/login";
    throw new Error("log in first");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

function badge(state) {
  const s = state || "UNSYNCED";
  return h("span", { class: `badge ${s}`, "data-state": s }, s);
}

function fail(main, error) {
  main.replaceChildren(h("p", { class: "err", role: "alert" }, `Could not load: ${error.message}`));
}

// --- burndown chart (inline SVG) ------------------------------------------------------------

function burndown(series) {
  const W = 900, H = 240, L = 40, R = 10, T = 10, B = 24;
  const points = series.points;
  const states = series.states || STATES;
  const top = Math.max(1, ...points.map((p) => states.reduce((a, s) => a + (p.counts[s] || 0), 0)));
  const x = (i) => L + (points.length < 2 ? 0 : (i * (W - L - R)) / (points.length - 1));
  const y = (v) => H - B - (v * (H - T - B)) / top;
  const chart = svg("svg", { class: "burndown", viewBox: `0 0 ${W} ${H}`, role: "img",
    preserveAspectRatio: "none", "aria-label": "Burndown: changesets by state over time" });
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(top * frac);
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#d0d7de" }),
      svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)));
  }
  const base = points.map(() => 0);
  for (const state of states) {
    const upper = points.map((p, i) => base[i] + (p.counts[state] || 0));
    const total = points.reduce((a, p) => a + (p.counts[state] || 0), 0);
    if (total > 0) {
      const forth = upper.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      const back = base.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).reverse();
      const band = svg("polygon", { points: [...forth, ...back].join(" "), fill: COLORS[state] || "#999",
        "data-state": state, "data-now": points.length ? points[points.length - 1].counts[state] || 0 : 0 });
      band.append(svg("title", {}, `${state}: ${points[points.length - 1].counts[state] || 0} now`));
      chart.append(band);
    }
    upper.forEach((v, i) => { base[i] = v; });
  }
  if (points.length) {
    chart.append(
      svg("text", { x: L, y: H - 6 }, new Date(points[0].at).toLocaleString()),
      svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "now"));
  }
  const now = points.length ? points[points.length - 1].counts : {};
  const legend = h("div", { class: "legend" }, states.map((s) =>
    h("span", { "data-legend": s }, h("i", { style: `background:${COLORS[s]}` }), `${s} ${now[s] || 0}`)));
  return h("div", { class: "panel" }, chart, legend);
}

// --- pages ----------------------------------------------------------------------------------

function batchChangesPage(main) {
  async function refresh() {
    const gen = routeGen;
    const page = await api("/api/batch-changes?limit=1000");
    if (gen !== routeGen) return;
    const rows = page.items.map((b) => h("tr", {},
      h("td", {}, h("a", { href: `#/batch-changes/${b.id}` }, b.name)),
      h("td", {}, b.state), h("td", {}, b.changeset_count), h("td", {}, time(b.created_at)),
      h("td", { class: "muted" }, b.description)));
    main.replaceChildren(h("h1", {}, "Batch changes"),
      rows.length ? h("table", {}, h("tr", {}, ["Name", "State", "Changesets", "Created", "Description"]
        .map((t) => h("th", {}, t))), rows)
        : h("p", { class: "muted" }, "No batch changes yet: `repo-updater batch-changes create NAME`."));
  }
  return { refresh };
}

function batchChangePage(main, id, perPage) {
  const state = { filter: null, cursors: [null], index: 0, seq: 0 };
  let parts = null;

  function layout(bc) {
    parts = {
      title: h("h1", {}, bc.name),
      sub: h("p", { class: "muted" }),
      cards: h("div", { class: "cards", id: "counts" }),
      chart: h("div", { id: "burndown" }),
      filters: h("div", { class: "filters", role: "group", "aria-label": "Filter by state" }),
      table: h("div", { id: "changesets" }),
      pager: h("div", { class: "pager" }),
    };
    main.replaceChildren(parts.title, parts.sub, parts.cards, h("h2", {}, "Burndown"), parts.chart,
      h("h2", {}, "Changesets"), parts.filters, parts.table, parts.pager);
  }

  function drawFilters(stats) {
    const options = [["All", null, stats.total], ...STATES.map((s) => [s, s, stats.by_state[s] || 0]),
      ["Errored", "errored", stats.errored]];
    parts.filters.replaceChildren(...options.map(([label, value, n]) => h("button", {
      type: "button", "data-filter": value || "all", "aria-pressed": String(state.filter === value),
      onclick: () => { state.filter = value; state.cursors = [null]; state.index = 0; refresh({ stats: false }); },
    }, `${label} (${n})`)));
  }

  function drawCards(stats) {
    const cards = [h("div", { class: "card", "data-count": "total" },
      h("div", { class: "n" }, stats.total), h("div", { class: "k" }, "changesets"))];
    for (const s of STATES) {
      const n = stats.by_state[s] || 0;
      if (n || s === "READONLY" || s === "OPEN") {
        cards.push(h("div", { class: "card", "data-count": s },
          h("div", { class: "n", style: `color:${COLORS[s]}` }, n), h("div", { class: "k" }, s)));
      }
    }
    cards.push(h("div", { class: `card${stats.errored ? " err" : ""}`, "data-count": "errored" },
      h("div", { class: "n" }, stats.errored), h("div", { class: "k" }, "sync errors")));
    parts.cards.replaceChildren(...cards);
  }

  function drawTable(page) {
    const head = h("tr", {}, ["State", "Repository", "Title", "Review", "Checks", "Last synced", "Sync error"]
      .map((t) => h("th", {}, t)));
    const rows = page.items.map((c) => {
      const cls = c.sync_error ? "errored" : c.external_state === "READONLY" ? "readonly" : null;
      const url = safeUrl(c.url);
      const name = `${c.repo_name}#${c.number}`;
      return h("tr", { class: cls, "data-id": c.id },
        h("td", {}, badge(c.external_state)),
        h("td", {}, url ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, name) : name),
        h("td", {}, c.title),
        h("td", {}, c.review_state ? h("span", { class: `pill ${c.review_state}` }, c.review_state) : ""),
        h("td", {}, c.check_state ? h("span", { class: `pill ${c.check_state}` }, c.check_state) : ""),
        h("td", {}, c.last_synced_at ? time(c.last_synced_at) : h("span", { class: "muted" }, "never")),
        h("td", { class: "err" }, c.sync_error || ""));
    });
    parts.table.replaceChildren(rows.length ? h("table", {}, head, rows)
      : h("p", { class: "muted" }, "No changesets in this view."));
    const first = state.index * perPage + 1;
    parts.pager.replaceChildren(
      h("button", { type: "button", disabled: state.index === 0, "data-page": "prev",
        onclick: () => { state.index -= 1; refresh({ stats: false }); } }, "‹ Previous"),
      h("span", { class: "muted" }, rows.length ? `${first}–${first + rows.length - 1}` : ""),
      h("button", { type: "button", disabled: !page.next, "data-page": "next",
        onclick: () => { state.cursors[state.index + 1] = page.next; state.index += 1; refresh({ stats: false }); } },
      "Next ›"));
  }

  let stats = null; // kept between refreshes that need no new counts
  let statsAt = 0; // when: the burndown's "now" is re-read at least once a minute

  async function refresh(options) {
    const query = new URLSearchParams({ batch_change: id, order: "attention", limit: perPage });
    if (state.filter === "errored") query.set("errored", "true");
    else if (state.filter) query.set("state", state.filter);
    const after = state.cursors[state.index];
    if (after) query.set("after", after);
    const gen = routeGen;
    const seq = ++state.seq; // a filter click and a poll may overlap: the newest one draws
    const again = !stats || !options || options.stats !== false || Date.now() - statsAt > 60000;
    const [bc, fresh, page] = await Promise.all([api(`/api/batch-changes/${id}`),
      again ? api(`/api/batch-changes/${id}/stats?points=40`) : stats, api(`/api/changesets?${query}`)]);
    if (gen !== routeGen || seq !== state.seq) return;
    if (again) statsAt = Date.now();
    stats = fresh;
    if (!parts) layout(bc);
    parts.sub.replaceChildren(`${bc.state.toLowerCase()} · created `, time(bc.created_at),
      bc.description ? ` · ${bc.description}` : "");
    drawCards(stats);
    parts.chart.replaceChildren(burndown(stats.burndown));
    drawFilters(stats);
    drawTable(page);
  }
  return { refresh };
}

function servicesPage(main) {
  async function refresh() {
    const gen = routeGen;
    const page = await api("/api/services?limit=1000");
    const columns = SERVICE_COLUMNS.filter((c) => !c.optional || page.items.some((s) => c.key in s));
    const histories = await Promise.all(page.items.map((s) =>
      api(`/api/services/${encodeURIComponent(s.name)}/syncs?limit=20`).catch(() => ({ items: [] }))));
    if (gen !== routeGen) return;
    const rows = page.items.map((s, i) => h("tr", { "data-service": s.name },
      columns.map((c) => {
        const v = s[c.key];
        if (c.time) return h("td", {}, v ? time(v) : h("span", { class: "muted" }, "never"));
        return h("td", { class: c.error && v ? "err" : null }, v === null || v === undefined ? "" : v);
      }),
      h("td", {}, h("div", { class: "syncs", title: "recent syncs, oldest first (red: failed)" },
        histories[i].items.slice().reverse().map((r) => h("i", {
          class: r.complete ? null : "failed",
          title: `${new Date(r.finished_at).toLocaleString()}: ${r.complete ? "complete" : r.error}; `
            + `listed ${r.listed}, added ${r.added}, modified ${r.modified}, removed ${r.removed}`,
        }))))));
    const head = h("tr", {}, columns.map((c) => h("th", {}, c.label)), h("th", {}, "Recent syncs"));
    main.replaceChildren(h("h1", {}, "Services"),
      h("p", { class: "muted" }, "Each configured code-host connection and its repo syncs."),
      rows.length ? h("table", {}, head, rows) : h("p", { class: "muted" }, "No services."));
  }
  return { refresh };
}

// --- routing and live updates ---------------------------------------------------------------

function route() {
  routeGen += 1;
  const main = document.getElementById("main");
  const [hash, search] = (location.hash.replace(/^#/, "") || "/").split("?");
  const params = new URLSearchParams(search || "");
  const perPage = Math.min(1000, Math.max(1, Number(params.get("per_page")) || PAGE_SIZE));
  const match = hash.match(/^\/batch-changes\/(\d+)$/);
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active",
    a.dataset.nav === (hash.startsWith("/services") ? "services" : "batch-changes")));
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  if (match) view = batchChangePage(main, match[1], perPage);
  else if (hash.startsWith("/services")) view = servicesPage(main);
  else view = batchChangesPage(main);
  view.refresh().catch((e) => fail(main, e));
}

function tickTimes() {
  document.querySelectorAll("time[datetime]").forEach((t) => { t.textContent = relative(t.getAttribute("datetime")); });
  const live = document.getElementById("live");
  if (lastUpdate) {
    const age = (Date.now() - lastUpdate) / 1000;
    live.textContent = age < 10 ? "live" : `no answer for ${Math.round(age)} s`;
    live.classList.toggle("stale", age >= 10);
  }
}

async function poll() {
  try {
    const body = await api("/api/pulse");
    lastUpdate = Date.now();
    if (pulse !== null && body.version !== pulse.version && view) {
      // Counts and burndown cost the most to compute: re-read them only when they may differ.
      await view.refresh({ stats: body.states !== pulse.states });
    }
    pulse = body;
  } catch (e) {
    // shown by tickTimes as "no answer for N s"; the next poll tries again
  }
  tickTimes();
  setTimeout(poll, POLL_MS);
}

window.addEventListener("hashchange", route);
route();
poll();
