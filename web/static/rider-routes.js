// The rider's routes: the searchable route list and the chosen routes (kept in the URL,
// `/?routes=R1,R2`), the route lines in their colours, the stops (the chosen routes' and, zoomed
// in, every stop in view) with the click test for them, and the list of the buses on the chosen
// routes (a keyboard way to them).
// An ES module imported by rider.js; uses Leaflet's global `L` and common.js's global `BT`.
// Data: /api/routes, /api/network.geojson, /api/routes/{id}.geojson, /api/stops?bbox=.

import {
  $, esc, routesById, selected, buses, page, wanted, setProblem, showMapNotice, routeBadge,
  delayClass, DEFAULT_COLOR,
} from "./rider-state.js";

const STOPS_MIN_ZOOM = 15;
const ROUTE_STOPS_MIN_ZOOM = 13;
const STOPS_LIMIT = 500;
const STOP_HIT_PX = 10;
const BUS_LIST_MAX = 100;

// --- routes: the list, the selection, the URL ------------------------------------------------
function fold(text) {
  return String(text).normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
}

export function selectionFromUrl() {
  const text = new URLSearchParams(location.search).get("routes");
  return text ? text.split(",").map((s) => s.trim()).filter(Boolean) : [];
}

function writeUrl() {
  const params = new URLSearchParams(location.search);
  params.delete("routes");
  let query = params.toString();
  if (selected.size) {
    // commas stay readable: /?routes=R1,R2
    const routes = `routes=${[...selected].map(encodeURIComponent).join(",")}`;
    query = query ? `${routes}&${query}` : routes;
  }
  history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}`);
}

export function renderRouteList() {
  const list = $("route-list");
  const routes = [...routesById.values()];
  if (!routes.length) {
    list.innerHTML = `<li class="empty">${esc(BT.t("no_routes"))}</li>`;
    return;
  }
  const query = fold($("route-search").value.trim());
  const shown = routes.filter((r) => !query || fold(`${r.short_name} ${r.long_name}`).includes(query));
  if (!shown.length) {
    list.innerHTML = `<li class="empty">${esc(BT.t("no_match", { q: $("route-search").value }))}</li>`;
    return;
  }
  list.innerHTML = shown.map((r) => {
    const note = r.has_shape ? "" : `<span class="route-note">${esc(BT.t("no_shape"))}</span>`;
    return `<li><label class="route-item">
      <input type="checkbox" value="${esc(r.route_id)}"${selected.has(r.route_id) ? " checked" : ""}>
      ${routeBadge(r.route_id)}<span class="route-name">${esc(r.long_name)}</span>${note}
    </label></li>`;
  }).join("");
}

export function renderRouteSummary() {
  $("route-summary").textContent = selected.size
    ? BT.t("n_selected", { n: selected.size }) : BT.t("all_routes");
  $("route-clear").hidden = selected.size === 0;
}

export function setSelection(ids, { fit = true } = {}) {
  selected.clear();
  for (const id of ids) selected.add(id);
  for (const [id, bus] of buses) if (!wanted(bus.v)) buses.delete(id);
  writeUrl();
  renderRouteSummary();
  for (const box of $("route-list").querySelectorAll("input[type=checkbox]")) {
    box.checked = selected.has(box.value);
  }
  if (page.live) page.live.subscribe({ routes: selected.size ? [...selected] : null, bbox: null });
  styleLines();
  const stopsLoaded = loadRouteStops();
  if (fit) stopsLoaded.then(() => fitToSelection());
  renderBusList(true);
  if (page.busLayer) page.busLayer.invalidate();
  return stopsLoaded;
}

export async function loadRoutes() {
  const answer = await BT.getJson("/api/routes");
  const sorted = answer.routes.slice().sort((a, b) =>
    String(a.short_name || a.long_name).localeCompare(String(b.short_name || b.long_name),
      undefined, { numeric: true }));
  for (const route of sorted) routesById.set(route.route_id, route);
  renderRouteList();
  if (!sorted.length) showMapNotice(BT.t("no_routes_notice"));
}

// --- route lines -----------------------------------------------------------------------------
let linesLayer = null;

function lineStyle(feature) {
  const p = feature.properties;
  const ids = p.route_ids || [p.route_id];
  const chosen = selected.size > 0 && ids.some((id) => selected.has(id));
  const faded = selected.size > 0 && !chosen;
  return {
    color: p.color || DEFAULT_COLOR,
    weight: chosen ? 6 : 3,
    opacity: faded ? 0.25 : chosen ? 1 : 0.7,
    dashArray: p.from_stops ? "6 6" : null, // no shape in the feed: a line joining the stops
    interactive: false,
  };
}

function styleLines() {
  if (!linesLayer) return;
  linesLayer.setStyle(lineStyle);
  linesLayer.eachLayer((layer) => {
    const ids = layer.feature.properties.route_ids || [layer.feature.properties.route_id];
    if (ids.some((id) => selected.has(id))) layer.bringToFront();
  });
}

export async function loadLines() {
  const collection = await BT.getJson("/api/network.geojson");
  linesLayer = L.geoJSON(collection, { renderer: page.lineRenderer, style: lineStyle, interactive: false });
  linesLayer.addTo(page.map);
  styleLines();
}

// `animate: false` at the start: the page is "ready" once the map stands where it will stay (a
// view set during a zoom animation is undone when the animation ends).
export function fitToSelection({ animate = true } = {}) {
  if (!selected.size) return;
  const bounds = L.latLngBounds([]);
  if (linesLayer) {
    linesLayer.eachLayer((layer) => {
      const ids = layer.feature.properties.route_ids || [layer.feature.properties.route_id];
      if (ids.some((id) => selected.has(id))) bounds.extend(layer.getBounds());
    });
  }
  for (const stop of routeStops) bounds.extend(stop.latlng);
  if (bounds.isValid()) page.map.fitBounds(bounds, { padding: [24, 24], maxZoom: 16, animate });
}

// --- stops -----------------------------------------------------------------------------------
let routeStops = []; // stops of the chosen routes: [{stop_id, name, latlng}]
let viewStops = []; // stops in view at zoom >= STOPS_MIN_ZOOM
export let drawnStops = []; // what drawStops drew: what a click can hit
let stopsLayer = null;
let stopsRequest = 0; // answers to older requests are ignored
let routeStopsRequest = 0;

// The layer the stops are drawn in (on page.lineRenderer); rider.js adds it when it makes the map.
export function addStopsLayer(map_) {
  stopsLayer = L.layerGroup().addTo(map_);
}

async function loadRouteStops() {
  const token = ++routeStopsRequest;
  const ids = [...selected];
  const stops = new Map();
  try {
    const collections = await Promise.all(ids.map((id) =>
      BT.getJson(`/api/routes/${encodeURIComponent(id)}.geojson`)));
    collections.forEach((collection, i) => {
      const route = routesById.get(ids[i]);
      const noShape = Boolean(route && !route.has_shape);
      for (const f of collection.features) {
        if (f.properties.kind !== "stop") continue;
        const [lon, lat] = f.geometry.coordinates;
        const { stop_id: stopId, name } = f.properties;
        stops.set(stopId, { stop_id: stopId, name, latlng: L.latLng(lat, lon), noShape });
      }
    });
    setProblem("route-stops", null);
  } catch (e) {
    setProblem("route-stops", BT.t("stops_error", { detail: e.message }));
  }
  if (token !== routeStopsRequest) return;
  routeStops = [...stops.values()];
  drawStops();
}

export async function loadViewStops() {
  const token = ++stopsRequest;
  if (page.map.getZoom() < STOPS_MIN_ZOOM) { viewStops = []; drawStops(); return; }
  const b = page.map.getBounds();
  const bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((x) => x.toFixed(6)).join(",");
  try {
    const collection = await BT.getJson(`/api/stops?bbox=${bbox}&limit=${STOPS_LIMIT}`);
    if (token !== stopsRequest) return;
    viewStops = collection.features.map((f) => ({
      stop_id: f.properties.stop_id, name: f.properties.name,
      latlng: L.latLng(f.geometry.coordinates[1], f.geometry.coordinates[0]),
    }));
    drawStops();
    setProblem("stops", null);
  } catch (e) {
    setProblem("stops", BT.t("stops_error", { detail: e.message }));
  }
}

// The chosen routes' stops from zoom ROUTE_STOPS_MIN_ZOOM (always for a route without a shape,
// whose line is only its stops joined), and every stop in view from STOPS_MIN_ZOOM.
function shownStops() {
  const byId = new Map();
  const zoomedIn = page.map.getZoom() >= ROUTE_STOPS_MIN_ZOOM;
  for (const s of routeStops) if (zoomedIn || s.noShape) byId.set(s.stop_id, s);
  for (const s of viewStops) byId.set(s.stop_id, s);
  return [...byId.values()];
}

function drawStops() {
  stopsLayer.clearLayers();
  const radius = page.map.getZoom() >= 16 ? 5 : 4;
  drawnStops = shownStops();
  for (const stop of drawnStops) {
    L.circleMarker(stop.latlng, {
      renderer: page.lineRenderer, radius, weight: 2, color: "#1b1b1b", fillColor: "#ffffff",
      fillOpacity: 1, interactive: false,
    }).addTo(stopsLayer);
  }
}

export function hitStop(point) {
  let best = null;
  let bestD2 = STOP_HIT_PX * STOP_HIT_PX;
  for (const stop of drawnStops) {
    const p = page.map.latLngToContainerPoint(stop.latlng);
    const d2 = (p.x - point.x) ** 2 + (p.y - point.y) ** 2;
    if (d2 <= bestD2) { best = stop; bestD2 = d2; }
  }
  return best;
}

// --- a keyboard way to the buses: a list of the buses on the chosen routes -------------------
let busListKey = "";

export function renderBusList(force = false) {
  const section = $("bus-list-section");
  section.hidden = selected.size === 0;
  if (section.hidden) { busListKey = ""; return; }
  const nowS = BT.serverNow();
  const rows = [...buses.values()]
    .filter((b) => nowS - b.v.observed_at_s <= BT.config.hide_after_s)
    .sort((a, b) => String(a.v.route_id).localeCompare(String(b.v.route_id)) || a.v.vehicle_id.localeCompare(b.v.vehicle_id))
    .slice(0, BUS_LIST_MAX);
  const key = rows.map((b) => `${b.v.vehicle_id}|${Math.round((b.v.delay_s || 0) / 60)}`).join(",") + BT.language;
  if (key === busListKey && !force) return; // unchanged: keep the DOM, and the focus in it
  busListKey = key;
  const focused = document.activeElement && document.activeElement.dataset.bus;
  $("bus-list").innerHTML = rows.length
    ? rows.map((b) => `<li><button type="button" class="bus-button" data-bus="${esc(b.v.vehicle_id)}">
        ${routeBadge(b.v.route_id)}
        <span class="${delayClass(b.v.delay_s)}">${esc(BT.delayText(b.v.delay_s) || BT.stateText(b.v.state))}</span>
        <span class="bus-id">${esc(b.v.vehicle_id)}</span></button></li>`).join("")
    : `<li class="empty">${esc(BT.t("no_bus_yet"))}</li>`;
  if (focused) {
    const again = $("bus-list").querySelector(`[data-bus="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}
