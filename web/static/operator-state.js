// What the parts of the operator's dashboard (`/operator`) share: the page's state (the live
// vehicles, routes, sorting and filtering, the chosen vehicle, the latest /api/fleet and
// /api/problems answers, the delay chart's samples, the errors shown), the small helpers that
// format numbers, delays and ages and build elements, and selectVehicle, which a table row, a dot
// on the map or a problem calls to choose a vehicle.
// An ES module (no build step) imported by the other operator-*.js files; uses common.js's `BT`.

export const ON_TIME_EARLY_S = -60; // the server's definition (tracker/api/http.py)
export const ON_TIME_LATE_S = 300;

export const $ = (id) => document.getElementById(id);

export const page = {
  vehicles: new Map(), // vehicle_id → the latest live vehicle (as /ws/live sends it)
  routes: new Map(), // route_id → {short_name, long_name, color}
  headsigns: new Map(), // trip_id → headsign (from /api/fleet)
  sort: { key: "route", direction: "ascending" },
  filterText: "",
  filterState: "",
  selectedId: null,
  fleet: null, // the latest /api/fleet answer
  problems: null, // the latest /api/problems answer
  samples: [], // the delay chart: {t, median, p90, n}, oldest first
  sampledLive: false,
  staleAfterS: 90,
  socketStatus: "connecting",
  errors: new Map(), // where → message; the banner shows them all
  map: null, // the Leaflet map (operator-map.js makes it)
  network: null, // the GeoJSON of every shape (/api/network.geojson)
};

// --- small helpers ---------------------------------------------------------------------------

export function percentile(ordered, q) {
  // numpy's default (linear between ranks), like the server's _percentile
  if (!ordered.length) return null;
  const rank = q * (ordered.length - 1);
  const low = Math.floor(rank);
  const high = Math.min(low + 1, ordered.length - 1);
  return ordered[low] + (ordered[high] - ordered[low]) * (rank - low);
}

export function number(value, digits = 0) {
  return new Intl.NumberFormat(BT.language, { maximumFractionDigits: digits }).format(value);
}

export function minutesText(delayS) {
  if (typeof delayS !== "number") return "–";
  const format = new Intl.NumberFormat(BT.language, {
    maximumFractionDigits: 1, signDisplay: "exceptZero",
  });
  return `${ltr(format.format(delayS / 60))} ${BT.t("min_unit")}`;
}

// A signed number kept whole in right-to-left text (else "-0.9" shows as "0.9-").
function ltr(text) { return `\u2066${text}\u2069`; }

export function shareText(share) {
  if (typeof share !== "number") return "–";
  return new Intl.NumberFormat(BT.language, { style: "percent" }).format(share);
}

export function agoText(ageS) {
  const s = Math.max(0, Math.round(ageS));
  return s < 120 ? BT.t("op_ago_s", { n: number(s) }) : BT.t("op_ago_min", { n: number(s / 60) });
}

export function ageOf(v) { return BT.serverNow() - v.observed_at_s; }
export function isStale(v) { return ageOf(v) > page.staleAfterS; }
export function shownState(v) { return isStale(v) ? "stale" : v.state; }
export function routeName(routeId) {
  if (!routeId) return "";
  const route = page.routes.get(routeId);
  return route ? route.short_name : routeId;
}
export function delayClass(delayS) {
  if (typeof delayS !== "number") return "";
  if (delayS > ON_TIME_LATE_S) return "late";
  if (delayS < ON_TIME_EARLY_S) return "early";
  return "on-time";
}

// The gap to the bus ahead against the scheduled one, from the latest /api/fleet, for the fleet
// table's Delay column where a bus has no delay (frequency lines): {text, className, title}.
let fleetIndex = { fleet: null, byId: new Map() };
export function gapOf(v) {
  if (fleetIndex.fleet !== page.fleet) {
    const rows = page.fleet ? page.fleet.vehicles : [];
    fleetIndex = { fleet: page.fleet, byId: new Map(rows.map((r) => [r.vehicle_id, r])) };
  }
  const row = fleetIndex.byId.get(v.vehicle_id);
  if (!row || typeof row.gap_s !== "number" || typeof row.scheduled_gap_s !== "number") return null;
  if (row.trip_id !== v.trip_id) return null; // the bus is on another trip since
  const minutes = (s) => number(s / 60, s < 600 ? 1 : 0);
  const ratio = row.gap_s / row.scheduled_gap_s;
  return {
    text: BT.t("op_gap", { gap: minutes(row.gap_s), scheduled: minutes(row.scheduled_gap_s) }),
    className: ratio < 0.25 ? "bunched" : ratio > 1.5 ? "gapped" : "on-time",
    title: BT.t("op_gap_title", { gap: minutes(row.gap_s), scheduled: minutes(row.scheduled_gap_s) }),
  };
}

// Long ids (feeds' trip ids make long vehicle ids) keep their start and their distinctive end.
export function shortId(id) {
  return id.length <= 20 ? id : `${id.slice(0, 4)}…${id.slice(-12)}`;
}

// A chart's <canvas> sized to its box at the screen's pixel ratio, cleared, for drawing in CSS
// pixels: {ctx, width, height}.
export function clearCanvas(canvas, defaultHeight) {
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || defaultHeight;
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.direction = "ltr";
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, width, height };
}

export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

export function element(tag, attributes = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "className") el.className = value;
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value);
  }
  el.append(...children);
  return el;
}

export function setError(where, message) {
  if (message) page.errors.set(where, message);
  else page.errors.delete(where);
  BT.showError([...page.errors.values()].join(" "));
}

export function apiError(error) { return BT.t("error_api", { detail: error.message }); }

// The delays counted for punctuality: in service, not stale, with a delay (as the server).
export function countedDelays(vehicles) {
  return vehicles
    .filter((v) => v.state === "in_service" && !v.stale && typeof v.delay_s === "number")
    .map((v) => v.delay_s)
    .sort((a, b) => a - b);
}

// Sorts names and ids as people do: "R2" before "R10".
export const collator = new Intl.Collator(undefined, { numeric: true });

// A reason (a rejected message's, a bus's) in the page's language, else as the server says it.
export function reasonText(reason) {
  const key = `reason_${reason}`;
  const text = BT.t(key);
  return text === key ? reason : text;
}

// --- choosing a vehicle ----------------------------------------------------------------------
// A table row, a dot on the map or a problem chooses a vehicle, and the table, the map and the
// box under it follow. Those parts import this file, not each other: operator.js, which imports
// them all, says what choosing does (onSelectVehicle) and the parts call selectVehicle.
let selectHandler = () => {};
export function onSelectVehicle(handler) { selectHandler = handler; }
export function selectVehicle(id) { selectHandler(id); }
