// The live dashboard: reads /v1/kpis, /v1/funnels, /v1/cohorts, /v1/segments,
// /v1/experiments, /v1/rules (and each rule's uplift) and /v1/dashboard/* of its own
// origin and draws them (Chart.js, served beside this file). Every number shown carries
// the value it came from in data-value, so a test can compare the page with the API.
// A panel whose data is not there yet says so; a panel that fails shows its error and
// leaves the others drawn.
"use strict";

const REFRESH_MS = 15000;
const charts = {};
const $ = (id) => document.getElementById(id);

const money = new Intl.NumberFormat("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const count = new Intl.NumberFormat("en");
const FORMATS = {
  count: (v) => count.format(v),
  money: (v) => (v === null ? "–" : money.format(v)),
  rate: (v) => (v === null ? "–" : (100 * v).toFixed(1) + " %"),
  days: (v) => (v === null ? "–" : v.toFixed(1) + " d"),
};
const TOTALS = [
  ["orders", "Orders", "count"],
  ["revenue", "Revenue", "money"],
  ["net_revenue", "Net revenue", "money"],
  ["average_order_value", "Average order", "money"],
  ["sessions", "Sessions", "count"],
  ["product_views", "Product views", "count"],
  ["repeat_orders", "Repeat orders", "count"],
  ["mean_days_between_orders", "Between orders", "days"],
  ["email_openers", "Newsletter openers", "count"],
  ["click_to_open_rate", "Click-to-open", "rate"],
  ["recommendation_view_share", "Views from recommendations", "rate"],
  ["offer_click_through_rate", "Offer click-through", "rate"],
];
const LATEST = [
  ["visitors", "Visitors", "count"],
  ["customers", "Identified", "count"],
  ["new_visitors", "New", "count"],
  ["returning_visitors", "Returning", "count"],
  ["buyers", "Buyers", "count"],
  ["repeat_purchase_rate", "Repeat buyers", "rate"],
  ["visitor_conversion_rate", "Visitor conversion", "rate"],
];

function tiles(container, values, list, prefix) {
  container.replaceChildren(
    ...list.map(([name, label, format]) => {
      const tile = document.createElement("div");
      tile.className = "tile";
      tile.dataset.kpi = prefix + "." + name;
      tile.dataset.value = JSON.stringify(values[name]);
      const caption = document.createElement("div");
      caption.className = "label";
      caption.textContent = label;
      const value = document.createElement("div");
      value.className = "value";
      value.textContent = FORMATS[format](values[name]);
      tile.append(caption, value);
      return tile;
    }),
  );
}

function draw(id, config) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart($(id), { ...config, options: { animation: false, maintainAspectRatio: false, ...config.options } });
}

function table(element, head, rows) {
  const tr = (cells, tag) => {
    const row = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement(tag);
      if (cell instanceof Node) td.append(cell); else td.textContent = cell;
      row.append(td);
    }
    return row;
  };
  element.replaceChildren(tr(head, "th"), ...rows.map((cells) => tr(cells, "td")));
}

async function get(path, params) {
  const response = await fetch(path + "?" + new URLSearchParams(params), { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${body.error || ""}`);
  return body;
}

function range() {
  const params = { granularity: $("granularity").value };
  if ($("from").value) params.from = $("from").value;
  if ($("to").value) params.to = $("to").value;
  return params;
}

async function refresh() {
  const kpis = await get("/v1/kpis", { ...range(), by: "channel" });
  // The range the api resolved (defaults, whole weeks): the other routes read the same.
  const params = { from: kpis.from, to: kpis.to, granularity: kpis.granularity };
  const [funnels, cohorts] = await Promise.all([
    get("/v1/funnels", params),
    get("/v1/cohorts", { from: kpis.from, to: kpis.to }),
  ]);
  if (!$("from").value) $("from").value = kpis.from;
  if (!$("to").value) $("to").value = kpis.to;
  document.body.dataset.from = kpis.from;
  document.body.dataset.to = kpis.to;
  document.body.dataset.granularity = kpis.granularity;

  tiles($("totals"), kpis.total, TOTALS, "total");
  const last = kpis.periods[kpis.periods.length - 1];
  $("latest-title").textContent = `The last ${kpis.granularity}: ${last.period}`;
  $("latest").dataset.period = last.period;
  tiles($("latest"), last.kpis, LATEST, "latest");

  const labels = kpis.periods.map((p) => p.period);
  draw("trend", {
    data: {
      labels,
      datasets: [
        { type: "line", label: "visitors", data: kpis.periods.map((p) => p.kpis.visitors), borderColor: "rgb(37,99,235)", yAxisID: "y" },
        { type: "line", label: "new visitors", data: kpis.periods.map((p) => p.kpis.new_visitors), borderColor: "rgb(147,197,253)", yAxisID: "y" },
        { type: "bar", label: "orders", data: kpis.periods.map((p) => p.kpis.orders), backgroundColor: "rgba(16,185,129,0.6)", yAxisID: "orders" },
      ],
    },
    options: { scales: { y: { position: "left", beginAtZero: true }, orders: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } } },
  });
  const channels = Object.entries(kpis.total_by || {}).filter(([, v]) => v.revenue > 0);
  draw("channels", {
    type: "doughnut",
    data: {
      labels: channels.map(([name]) => name),
      datasets: [{ data: channels.map(([, v]) => v.revenue), backgroundColor: ["#2563eb", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#6b7280"] }],
    },
  });

  const steps = funnels.total;
  draw("funnel-chart", {
    type: "bar",
    data: { labels: steps.map((s) => s.step), datasets: [{ label: "customers", data: steps.map((s) => s.customers), backgroundColor: "rgba(37,99,235,0.7)" }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } } },
  });
  table($("funnel"), ["step", "customers", "events", "conversion"], steps.map((s) => {
    const customers = document.createElement("span");
    customers.dataset.step = s.step;
    customers.dataset.value = s.customers;
    customers.textContent = count.format(s.customers);
    return [s.step, customers, count.format(s.events), s.conversion === undefined ? "" : FORMATS.rate(s.conversion)];
  }));

  const weeks = Math.max(0, ...cohorts.cohorts.map((c) => c.weeks.length));
  table($("cohorts"), ["cohort", "customers", ...Array.from({ length: weeks }, (_, k) => "+" + k)], cohorts.cohorts.map((c) => [
    c.cohort,
    count.format(c.customers),
    ...Array.from({ length: weeks }, (_, k) => {
      const cell = c.weeks[k];
      const span = document.createElement("span");
      if (cell === undefined || cell.active_share === null) return span;
      span.dataset.cohort = c.cohort;
      span.dataset.week = k;
      span.dataset.value = cell.active;
      span.textContent = Math.round(100 * cell.active_share) + "%";
      span.title = `${cell.active} of ${c.customers} came back, ${cell.ordering} ordered`;
      span.style.display = "block";
      span.style.background = `rgba(var(--accent), ${cell.active_share.toFixed(3)})`;
      span.style.color = cell.active_share > 0.5 ? "#fff" : "inherit";
      return span;
    }),
  ]));

  const panels = await Promise.allSettled([
    segmentsPanel(params),
    personasPanel(),
    distributionsPanel(),
    experimentsPanel(),
    upliftPanel(),
    qualityPanel(),
    trustPanel(),
  ]);
  const failed = panels.filter((p) => p.status === "rejected").map((p) => String(p.reason.message || p.reason));
  const status = $("status");
  status.className = failed.length ? "meta error" : "meta";
  status.textContent = failed.length
    ? failed.join(" · ")
    : `${kpis.from} to ${kpis.to} · updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

// "No data yet" in a panel: what is missing and why, instead of an empty chart.
function empty(id, text) {
  const holder = $(id);
  if (!text) {
    holder.replaceChildren();
    return;
  }
  const note = document.createElement("p");
  note.className = "empty";
  note.textContent = text;
  holder.replaceChildren(note);
}

function valued(text, value, attributes) {
  const span = document.createElement("span");
  span.textContent = text;
  span.dataset.value = JSON.stringify(value);
  Object.assign(span.dataset, attributes);
  return span;
}

const PALETTE = ["#2563eb", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#6b7280", "#0ea5e9", "#84cc16"];
const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + " %");
const interval = (pair) => (pair ? `[${pct(pair[0])}, ${pct(pair[1])}]` : "–");

async function segmentsPanel(params) {
  const [history, segments] = await Promise.all([
    get("/v1/dashboard/segments", { from: params.from, to: params.to }),
    get("/v1/segments", {}),
  ]);
  const names = segments.segments.map((s) => s.name);
  draw("segments-chart", {
    type: "line",
    data: {
      labels: history.days,
      datasets: names.map((name, i) => ({
        label: name,
        data: history.sizes[name],
        borderColor: PALETTE[i % PALETTE.length],
        backgroundColor: PALETTE[i % PALETTE.length],
        pointRadius: 0,
      })),
    },
    options: { scales: { y: { beginAtZero: true } } },
  });
  $("segments-history").dataset.complete = history.complete;
  empty("segments-history", history.complete ? "" : history.pending
    ? `still counting: ${count.format(history.pending)} transitions left to read`
    : "the segments topic no longer holds its whole history: sizes count the transitions it still holds");
  empty("segments-empty", names.length ? "" : "no segments are defined (CDPULSE_SEGMENTS_FILE)");
  table($("segments"), ["segment", "kind", "customers"], segments.segments.map((s) => [
    s.name, s.kind, valued(count.format(s.size), s.size, { segment: s.name }),
  ]));
}

async function personasPanel() {
  const body = await get("/v1/dashboard/personas", {});
  empty("personas-empty", body.pending || "");
  table($("personas"), ["persona", "customers (share)", "what sets it apart", "typical: orders, spend, active days (60 days)"],
    body.personas.map((p) => [
      String(p.id),
      valued(pct(p.customer_share), p.customer_share, { persona: String(p.id) }),
      p.description,
      `${p.typical.orders}, ${p.typical.net_revenue}, ${p.typical.active_days}`,
    ]));
}

function distributionChart(name, d) {
  const digits = name === "churn" ? 2 : 0;
  draw(name + "-chart", {
    type: "bar",
    data: {
      labels: d.bins.map((b) => `${b.from.toFixed(digits)}–${b.to.toFixed(digits)}`),
      datasets: [{ label: "customers", data: d.bins.map((b) => b.count), backgroundColor: "rgba(37,99,235,0.7)" }],
    },
    options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
  });
  $(name + "-what").textContent = d.what + (d.n ? ` (${count.format(d.n)} values)` : "");
  empty(name + "-empty", d.n ? "" : "no data yet: the learner has not published this model's histograms");
  table($(name + "-quantiles"), ["quantile", ...d.quantiles.map((q) => "p" + Math.round(100 * q.rank))], d.n ? [[
    "value",
    ...d.quantiles.map((q) => valued(q.value.toFixed(digits === 2 ? 3 : 2), q.value, { quantile: `${name}:${q.rank}` })),
  ]] : []);
}

async function distributionsPanel() {
  const found = await get("/v1/dashboard/distributions", {});
  for (const d of found.distributions) distributionChart(d.model, d);
}

async function experimentsPanel() {
  const found = await get("/v1/experiments", {});
  const rows = [];
  const labels = [];
  const bars = [];
  const rates = [];
  for (const e of found.experiments) {
    for (const v of e.variants) {
      labels.push(`${e.name} · ${v.name}`);
      bars.push(v.interval);
      rates.push(v.conversion_rate);
      const versus = v.versus_control;
      rows.push([
        e.name,
        v.name,
        valued(count.format(v.exposures), v, { experiment: `${e.name}:${v.name}` }),
        count.format(v.conversions),
        pct(v.conversion_rate) + " " + interval(v.interval),
        versus ? `${pct(versus.difference)} ${interval(versus.interval)}${versus.significant ? " ✓" : ""}` : "control",
      ]);
    }
  }
  // Intervals of variants nobody was exposed to are the whole [0, 1]: not drawn.
  const exposed = found.experiments.some((e) => e.variants.some((v) => v.exposures > 0));
  draw("experiments-chart", {
    data: {
      labels: exposed ? labels : [],
      datasets: [
        { type: "bar", label: "interval", data: bars, backgroundColor: "rgba(37,99,235,0.35)" },
        { type: "line", label: "conversion rate", data: rates, showLine: false, pointRadius: 5, borderColor: "rgb(37,99,235)", backgroundColor: "rgb(37,99,235)" },
      ],
    },
    options: { indexAxis: "x", scales: { y: { beginAtZero: true } } },
  });
  empty("experiments-empty", found.experiments.length ? (exposed ? "" : "no exposures yet: a variant is served by POST /v1/experiments/{name}/assignment/{customer}") : "no experiments are declared (CDPULSE_SEGMENTS_FILE: experiments)");
  table($("experiments"), ["experiment", "variant", "exposed", "converted", "rate [interval]", "vs control"], rows);
}

async function upliftPanel() {
  const config = await get("/v1/rules", {});
  const names = (config.rules || []).map((r) => r.name);
  const reports = await Promise.all(names.map((name) => get(`/v1/rules/${encodeURIComponent(name)}/uplift`, {})));
  draw("uplift-chart", {
    data: {
      labels: names,
      datasets: [
        { type: "bar", label: "95 % interval", data: reports.map((r) => r.ci95), backgroundColor: "rgba(16,185,129,0.4)" },
        { type: "line", label: "uplift", data: reports.map((r) => r.uplift), showLine: false, pointRadius: 5, borderColor: "rgb(16,185,129)", backgroundColor: "rgb(16,185,129)" },
      ],
    },
  });
  const exposed = reports.some((r) => r.treated.exposed + r.holdout.exposed > 0);
  empty("uplift-empty", names.length ? (exposed ? "" : "no trigger has fired yet") : "no trigger rules are configured (CDPULSE_TRIGGER_RULES)");
  table($("uplift"), ["rule", "treated", "holdout", "uplift [95 %]"], reports.map((r) => [
    r.rule,
    valued(`${r.treated.converted} / ${r.treated.exposed}`, r, { rule: r.rule }),
    `${r.holdout.converted} / ${r.holdout.exposed}`,
    r.uplift === null ? "–" : `${pct(r.uplift)} ${interval(r.ci95)}`,
  ]));
}

function ago(seconds) {
  if (seconds === null) return "never";
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

async function qualityPanel() {
  const q = await get("/v1/dashboard/quality", {});
  const received = q.topics.some((t) => t.messages > 0);
  empty("quality-empty", received ? "" : "no data yet: nothing has arrived on the input topics");
  table($("quality"), ["input topic", "messages", "lag", "rejected", "newest arrived"], q.topics.map((t) => [
    t.topic,
    valued(count.format(t.messages), t, { topic: t.topic }),
    count.format(t.lag),
    count.format(t.rejected),
    ago(t.seconds_since_newest),
  ]));
  const reasons = Object.entries(q.rejections);
  empty("rejections-empty", reasons.length ? "" : "no rejection: the dead-letter topic is empty");
  table($("rejections"), reasons.length ? ["reason", "events"] : [], reasons.map(([reason, n]) => [
    reason, valued(count.format(n), n, { reason }),
  ]));
  $("quality-note").dataset.pending = q.dead_letters_pending;
}

const STATUS_CLASS = { stable: "ok", moderate: "warn", drifted: "flag", unknown: "" };

async function trustPanel() {
  const t = await get("/v1/dashboard/trust", {});
  const rows = [];
  for (const [model, report] of Object.entries(t.drift)) {
    const cell = valued(report ? report.status : "unknown", report ? report.status : null, { drift: model });
    cell.className = STATUS_CLASS[report ? report.status : "unknown"];
    const moved = report
      ? [...report.features, ...(report.score ? [report.score] : [])]
          .filter((f) => f.status === "drifted" || f.status === "moderate")
          .map((f) => `${f.name} ${f.psi.toFixed(2)}`)
          .join(", ")
      : "";
    const why = !report ? "no report yet" : report.unknown || moved || "no input moved";
    rows.push([model, cell, why]);
  }
  table($("drift"), ["model", "status", "inputs that moved (PSI) or why unknown"], rows);

  const f = t.fairness;
  empty("fairness-empty", f ? "" : "no data yet: " + t.fairness_missing);
  const flagged = $("fairness-flagged");
  flagged.className = f && f.flagged.length ? "flag" : "ok";
  flagged.textContent = !f ? "" : f.flagged.length ? "Flagged: " + f.flagged.join("; ") : `Nothing flagged over ${f.population}.`;
  flagged.dataset.value = JSON.stringify(f ? f.flagged : null);
  const cells = [];
  for (const subject of f ? f.subjects : []) {
    for (const a of subject.attributes) {
      for (const g of a.groups) {
        const rate = valued(pct(g.selection_rate), { selection_rate: g.selection_rate, ratio: g.ratio, flagged: g.flagged }, {
          fairness: `${subject.name}:${a.attribute}:${g.group}`,
        });
        if (g.flagged) rate.className = "flag";
        cells.push([`${subject.kind} ${subject.name}`, `${a.attribute}=${g.group}`, count.format(g.members), rate,
          g.ratio === null ? "–" : g.ratio.toFixed(2)]);
      }
    }
  }
  table($("fairness"), f ? ["subject", "group", "members", "selected", "ratio"] : [], cells);
}

async function tick() {
  try {
    await refresh();
  } catch (error) {
    const status = $("status");
    status.className = "meta error";
    status.textContent = String(error.message || error);
  }
}

for (const id of ["from", "to", "granularity"]) $(id).addEventListener("change", tick);
tick();
setInterval(tick, REFRESH_MS);
