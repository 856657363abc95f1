// What the parts of the rider's page (`/`) share: the routes, the chosen routes and the buses;
// the map, the bus layer and the live socket once rider.js has made them; the error banner and
// the map notice; route colours and badges, and the delay classes (late, early, on time).
// An ES module (no build step) imported by the other rider-*.js files; uses common.js's `BT`.

export const DEFAULT_COLOR = "#2f6fb3";
const NO_ROUTE_COLOR = "#707070";

export const $ = (id) => document.getElementById(id);
export const esc = BT.escapeHtml;

// --- shared state ----------------------------------------------------------------------------
export const routesById = new Map(); // route_id -> route from /api/routes
export const selected = new Set(); // chosen route ids; empty: every route
export const buses = new Map(); // vehicle_id -> bus record (see upsertBus in rider-buses.js)
// Made by rider.js at start (null before, or if /api/config failed), read by every part.
export const page = {
  map: null,
  busLayer: null,
  live: null, // BT.LiveSocket
  lineRenderer: null, // the canvas that draws route lines and stops
};

export function wanted(v) {
  return selected.size === 0 || selected.has(v.route_id);
}

// The error banner shows every current problem, one per source ("routes", "stops", ...); a
// source that works again takes its message back.
const problems = new Map();
export function setProblem(source, message) {
  if (message) problems.set(source, message); else problems.delete(source);
  BT.showError([...problems.values()].join(" "));
}

// A lasting message over the map (the "not live" one is rider.js's renderStatus).
export function showMapNotice(text) {
  const notice = $("map-notice");
  notice.dataset.kind = "fixed";
  notice.textContent = text;
  notice.hidden = false;
}

// --- colours ---------------------------------------------------------------------------------
export function routeColor(routeId) {
  const route = routesById.get(routeId);
  if (!route) return routeId ? DEFAULT_COLOR : NO_ROUTE_COLOR;
  return route.color || DEFAULT_COLOR;
}

function luminance(hex) {
  const channels = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  const [r, g, b] = channels.map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

// The feed's text colour when it reads at 4.5:1 on the route colour, else black or white.
function badgeColors(route) {
  const bg = (route && route.color) || DEFAULT_COLOR;
  const given = route && route.text_color;
  if (given && contrast(bg, given) >= 4.5) return { bg, fg: given };
  return { bg, fg: contrast(bg, "#000000") >= contrast(bg, "#ffffff") ? "#000000" : "#ffffff" };
}

export function routeBadge(routeId) {
  const route = routesById.get(routeId);
  const { bg, fg } = badgeColors(route);
  const name = route ? route.short_name || route.long_name : routeId || "?";
  return `<span class="route-badge" style="background:${bg};color:${fg}">${esc(name)}</span>`;
}

// The class of a delay's text (the bus list, the bus and stop panels).
export function delayClass(delayS) {
  if (typeof delayS !== "number") return "";
  if (delayS >= 150) return "late";
  if (delayS <= -90) return "early";
  return "on-time";
}
