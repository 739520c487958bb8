// The live KPI dashboard: reads /v1/kpis, /v1/funnels and /v1/cohorts of its own origin
// and draws them (Chart.js, served beside this file). Every number shown carries the
// value it came from in data-value, so a test can compare the page with the API.
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

  const status = $("status");
  status.className = "meta";
  status.textContent = `${kpis.from} to ${kpis.to} · updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
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
