// The operator's time–distance diagram ("string-line" chart) of one route and direction, from
// /api/operations/time-distance every 15 s: x is the time over the last hour, y the distance
// along the route (its stops as faint lines); each bus is a line of its own colour, and the
// timetable's trips on that shape are thin grey lines. Lines close together are buses bunched,
// far apart a gap; a line that stops short is a bus that stopped reporting. A select
// (#diagram-route) picks the route and direction (at first the one with the most buses in
// service); the legend under the chart lists the buses, each choosing its vehicle as a table row
// does. The chart is SVG, drawn left to right in every language (time runs that way).
// An ES module imported by operator.js; uses common.js's global `BT`.

import {
  $, page, collator, number, shortId, element, setError, apiError, selectVehicle,
} from "./operator-state.js";

const REFRESH_MS = 15000;
const WINDOW_MIN = 60;
const HEIGHT = 300;
const PAD = { left: 58, right: 14, top: 12, bottom: 26 };
const BREAK_AFTER_S = 180; // a silence longer than this breaks a bus's line
const BREAK_BACK_M = 300; // and so does a jump back along the route (a new trip)
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939"];
const SVG = "http://www.w3.org/2000/svg";

BT.addStrings({
  en: {
    op_diagram: "Headways: buses along the route, last hour",
    op_diagram_route: "Route and direction",
    op_diagram_note: "Each bus is a line of its distance along the route over time; thin grey lines are the timetable's trips; lines close together are buses bunched, far apart a gap.",
    op_diagram_legend: "Buses in the chart",
    dg_option: "{route} towards {headsign}", dg_option_plain: "{route}",
    dg_label: "Route {route}: {n} buses from {from} to {to} along {km} km and {stops} stops",
    dg_empty: "No bus of this route has reported in the last hour.",
    dg_no_routes: "No route to show.",
    dg_bus: "trip {trips}, last at {km} km at {time}",
    dg_timetable: "timetable", dg_km: "{n} km", dg_loading: "Loading…",
  },
  fr: {
    op_diagram: "Intervalles : les bus le long de la ligne, dernière heure",
    op_diagram_route: "Ligne et sens",
    op_diagram_note: "Chaque bus est une courbe de sa distance le long de la ligne dans le temps ; les fines lignes grises sont les courses de l'horaire ; des courbes proches sont des bus groupés, éloignées un trou.",
    op_diagram_legend: "Bus du graphique",
    dg_option: "{route} direction {headsign}", dg_option_plain: "{route}",
    dg_label: "Ligne {route} : {n} bus de {from} à {to} sur {km} km et {stops} arrêts",
    dg_empty: "Aucun bus de cette ligne n'a émis dans la dernière heure.",
    dg_no_routes: "Aucune ligne à montrer.",
    dg_bus: "course {trips}, vu en dernier à {km} km à {time}",
    dg_timetable: "horaire", dg_km: "{n} km", dg_loading: "Chargement…",
  },
  ar: {
    op_diagram: "الفواصل: الحافلات على طول الخط، آخر ساعة",
    op_diagram_route: "الخط والاتجاه",
    op_diagram_note: "كل حافلة خطٌّ لمسافتها على طول الخط عبر الزمن؛ الخطوط الرمادية الرفيعة رحلات الجدول؛ الخطوط المتقاربة حافلات متكتلة والمتباعدة فجوة.",
    op_diagram_legend: "الحافلات في الرسم",
    dg_option: "{route} باتجاه {headsign}", dg_option_plain: "{route}",
    dg_label: "الخط {route}: {n} حافلات من {from} إلى {to} على {km} كم و{stops} محطة",
    dg_empty: "لم ترسل أي حافلة من هذا الخط في آخر ساعة.",
    dg_no_routes: "لا خط لعرضه.",
    dg_bus: "الرحلة {trips}، آخر موقع عند {km} كم في {time}",
    dg_timetable: "الجدول", dg_km: "{n} كم", dg_loading: "جارٍ التحميل…",
  },
});

let choice = null; // "route|direction" ("" direction: all), chosen by the operator or at start
let chosenByUser = false;
let answer = null; // the latest /api/operations/time-distance answer for `choice`
let request = 0;

// --- the route and direction ---------------------------------------------------------------

function routeDirections() {
  const found = new Map(); // "route|direction" → {route_id, direction_id, headsigns}
  for (const f of page.network?.features || []) {
    if (f.geometry.type !== "LineString") continue;
    const p = f.properties;
    for (const routeId of p.route_ids || [p.route_id]) {
      if (!routeId) continue;
      const direction = p.direction_id ?? "";
      const key = `${routeId}|${direction}`;
      if (!found.has(key)) found.set(key, { route_id: routeId, direction_id: direction, headsigns: new Set() });
      for (const h of p.headsigns || []) found.get(key).headsigns.add(h);
    }
  }
  return [...found.entries()].sort(([, a], [, b]) => collator.compare(routeName(a.route_id), routeName(b.route_id))
    || String(a.direction_id).localeCompare(String(b.direction_id)));
}

function routeName(routeId) { return page.routes.get(routeId)?.short_name || routeId; }

function optionText(entry) {
  const headsign = [...entry.headsigns].join(" / ");
  return headsign
    ? BT.t("dg_option", { route: routeName(entry.route_id), headsign })
    : BT.t("dg_option_plain", { route: routeName(entry.route_id) });
}

// The route and direction with the most buses in service now.
function busiest() {
  const counts = new Map();
  for (const v of page.vehicles.values()) {
    if (v.state !== "in_service" || !v.route_id) continue;
    const key = `${v.route_id}|${v.direction_id ?? ""}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  let best = null;
  for (const [key, n] of counts) if (!best || n > best[1]) best = [key, n];
  return best && best[0];
}

function renderOptions() {
  const select = $("diagram-route");
  const entries = routeDirections();
  if (!chosenByUser) {
    const wanted = busiest();
    if (wanted && entries.some(([key]) => key === wanted)) choice = wanted;
  }
  if (!choice && entries.length) choice = entries[0][0];
  select.replaceChildren(...entries.map(([key, entry]) => element("option", { value: key, text: optionText(entry) })));
  if (choice) select.value = choice;
}

// --- the data ------------------------------------------------------------------------------

async function refresh() {
  if (!choice) {
    renderOptions();
    if (!choice) { draw(); return; }
  } else if (!chosenByUser && !answer?.vehicles.length) {
    const before = choice;
    renderOptions(); // the busiest route may be known now
    if (choice !== before) answer = null;
  }
  const token = ++request;
  const [routeId, direction] = choice.split("|");
  const query = new URLSearchParams({ route_id: routeId, minutes: String(WINDOW_MIN) });
  if (direction !== "") query.set("direction_id", direction);
  try {
    const found = await BT.getJson(`/api/operations/time-distance?${query}`);
    if (token !== request) return;
    answer = found;
    setError("diagram", null);
  } catch (error) {
    if (token !== request) return;
    setError("diagram", apiError(error));
  }
  draw();
}

export function startDiagram() {
  const select = $("diagram-route");
  select.addEventListener("change", () => {
    choice = select.value;
    chosenByUser = true;
    answer = null;
    draw();
    refresh();
  });
  renderOptions();
  refresh();
  setInterval(refresh, REFRESH_MS);
  new ResizeObserver(() => draw()).observe($("diagram"));
}

// --- drawing -------------------------------------------------------------------------------

function svg(tag, attributes = {}, text = null) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) el.setAttribute(name, value);
  if (text !== null) el.textContent = text;
  return el;
}

function kmText(m) { return number(m / 1000, m < 10000 ? 1 : 0); }

// A bus's points as runs of [x, y] without silences or jumps back.
function segments(points, x, y) {
  const out = [];
  let run = [];
  let previous = null;
  for (const [t, m] of points) {
    if (previous && (t - previous[0] > BREAK_AFTER_S || m < previous[1] - BREAK_BACK_M)) {
      if (run.length) out.push(run);
      run = [];
    }
    run.push(`${x(t).toFixed(1)},${y(m).toFixed(1)}`);
    previous = [t, m];
  }
  if (run.length) out.push(run);
  return out;
}

export function draw() {
  const box = $("diagram");
  const legend = $("diagram-legend");
  if (!choice) {
    box.replaceChildren(element("p", { className: "empty", text: BT.t("dg_no_routes") }));
    legend.replaceChildren();
    return;
  }
  if (!answer) {
    box.replaceChildren(element("p", { className: "empty", text: BT.t("dg_loading") }));
    legend.replaceChildren();
    return;
  }
  const a = answer;
  const [routeId] = choice.split("|");
  const width = Math.max(box.clientWidth || 600, 320);
  const plotW = width - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const lengthM = a.length_m || Math.max(1, ...a.stops.map((s) => s.dist_m),
    ...a.vehicles.flatMap((v) => v.points.map((p) => p[1])));
  const x = (t) => PAD.left + ((t - a.start_s) / (a.end_s - a.start_s)) * plotW;
  const y = (m) => PAD.top + (1 - m / lengthM) * plotH;
  const root = svg("svg", {
    class: "td-chart", viewBox: `0 0 ${width} ${HEIGHT}`, width, height: HEIGHT, role: "img",
    direction: "ltr", "data-route": routeId,
  });
  const label = BT.t("dg_label", {
    route: routeName(routeId), n: number(a.vehicles.length), from: BT.timeText(a.start_s),
    to: BT.timeText(a.end_s), km: kmText(lengthM), stops: number(a.stops.length),
  });
  root.setAttribute("aria-label", label);
  root.append(svg("title", {}, label));
  const clipId = "td-clip";
  const clip = svg("clipPath", { id: clipId });
  clip.append(svg("rect", { x: PAD.left, y: PAD.top, width: plotW, height: plotH }));
  const defs = svg("defs");
  defs.append(clip);
  root.append(defs, svg("rect", { class: "td-frame", x: PAD.left, y: PAD.top, width: plotW, height: plotH }));

  const axes = svg("g", { class: "td-axes", "aria-hidden": "true" });
  for (const s of a.stops) { // stops: faint lines, their names on hover
    const line = svg("line", { class: "td-stop", x1: PAD.left, x2: PAD.left + plotW, y1: y(s.dist_m), y2: y(s.dist_m) });
    line.append(svg("title", {}, s.name));
    axes.append(line);
  }
  const stepKm = lengthM > 20000 ? 5 : lengthM > 8000 ? 2 : lengthM > 3000 ? 1 : 0.5;
  for (let m = 0; m <= lengthM + 1; m += stepKm * 1000) {
    axes.append(svg("text", { class: "td-tick", x: PAD.left - 6, y: y(m) + 4, "text-anchor": "end" },
      BT.t("dg_km", { n: kmText(m) })));
  }
  const stepS = 15 * 60;
  for (let t = Math.ceil(a.start_s / stepS) * stepS; t <= a.end_s; t += stepS) {
    axes.append(svg("line", { class: "td-grid", x1: x(t), x2: x(t), y1: PAD.top, y2: PAD.top + plotH }));
    axes.append(svg("text", { class: "td-tick", x: x(t), y: HEIGHT - 8, "text-anchor": "middle" }, BT.timeText(t)));
  }
  root.append(axes);

  const plot = svg("g", { "clip-path": `url(#${clipId})` });
  const timetable = svg("g", { class: "td-scheduled" });
  for (const trip of a.scheduled) {
    const line = svg("polyline", {
      points: trip.points.map(([t, m]) => `${x(t).toFixed(1)},${y(m).toFixed(1)}`).join(" "),
      "data-trip": trip.trip_id,
    });
    line.append(svg("title", {}, `${BT.t("dg_timetable")}: ${trip.trip_id}`));
    timetable.append(line);
  }
  plot.append(timetable);
  const items = [];
  a.vehicles.forEach((v, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const last = v.points[v.points.length - 1];
    const text = BT.t("dg_bus", {
      trips: v.trip_ids.join(", ") || "–", km: kmText(last[1]), time: BT.timeText(last[0], true),
    });
    const group = svg("g", {
      class: `td-bus${v.vehicle_id === page.selectedId ? " selected" : ""}`, "data-vehicle": v.vehicle_id,
      "data-last-s": last[0], "data-last-m": last[1], stroke: colour,
    });
    group.append(svg("title", {}, `${shortId(v.vehicle_id)}: ${text}`));
    for (const run of segments(v.points, x, y)) {
      group.append(run.length > 1 ? svg("polyline", { points: run.join(" ") })
        : svg("circle", { cx: run[0].split(",")[0], cy: run[0].split(",")[1], r: 2, fill: colour }));
    }
    group.append(svg("circle", { class: "td-end", cx: x(last[0]), cy: y(last[1]), r: 3.5, fill: colour }));
    plot.append(group);
    const button = element("button", {
      type: "button", className: "link", text: shortId(v.vehicle_id), title: BT.t("op_select", { id: v.vehicle_id }),
    });
    button.addEventListener("click", () => selectVehicle(v.vehicle_id));
    items.push(element("li", { "data-vehicle": v.vehicle_id },
      element("i", { className: "td-key", style: `background:${colour}`, "aria-hidden": "true" }), button,
      element("span", { className: "td-detail", text: ` ${text}` })));
  });
  root.append(plot);
  if (!a.vehicles.length) {
    root.append(svg("text", { class: "td-empty", x: PAD.left + plotW / 2, y: PAD.top + plotH / 2, "text-anchor": "middle" },
      BT.t("dg_empty")));
  }
  if (a.scheduled.length) {
    items.push(element("li", { className: "td-timetable" },
      element("i", { className: "td-key scheduled", "aria-hidden": "true" }), element("span", { text: BT.t("dg_timetable") })));
  }
  box.replaceChildren(root);
  legend.replaceChildren(...items);
}

// For tests: the drawn route and its buses.
export function diagramShown() {
  return { choice, vehicles: (answer?.vehicles || []).map((v) => v.vehicle_id) };
}

export function renderDiagramText() { // the language changed: the options and the chart
  renderOptions();
  draw();
}
