// The rider's live map (`/`): route lines in their colours, every live bus gliding along and
// pointing where it goes, a searchable route picker whose choice lives in the URL
// (`/?routes=R1,R2`), and a side panel (a bottom sheet on phones) for a bus or a stop.
// This file is the page's entry point and wiring: it makes the map, opens the live socket, turns
// its messages into buses, shows whether the page is live, wires the controls, and exposes the
// page to tests. The parts are ES modules beside it (no build step), loaded by index.html as
// <script type="module"> after Leaflet (the global `L`) and common.js (the global `BT`):
//   rider-strings.js  the page's texts in English, French and Arabic
//   rider-state.js    what the parts share: routes, chosen routes, buses, the map; the error
//                     banner; route colours and badges
//   rider-buses.js    the bus records and the canvas layer that draws them (BusLayer, sprites)
//   rider-routes.js   the route list and the URL, route lines, stops, the list of buses
//   rider-details.js  the details panel: a bus (next stops) or a stop (next departures)
//
// Data: /api/config, /api/routes, /api/network.geojson, /api/routes/{id}.geojson (stops of the
// chosen routes), /api/stops?bbox= (stops at zoom >= 15), /api/vehicles/{id}, /api/stops/{id},
// and the /ws/live websocket (through BT.LiveSocket).
//
// Buses are drawn on one <canvas> (BusLayer in rider-buses.js), not one DOM marker each: with
// 2,000 buses DOM markers cost far more than a frame to move. For tests and the bench,
// `window.BT_RIDER` exposes the map and the drawn state (see the end of this file).

import "./rider-strings.js";
import { $, routesById, selected, buses, page, wanted, setProblem } from "./rider-state.js";
import { BusLayer, upsertBus, visibleBusCount } from "./rider-buses.js";
import {
  selectionFromUrl, renderRouteList, renderRouteSummary, setSelection, loadRoutes, loadLines,
  fitToSelection, addStopsLayer, loadViewStops, hitStop, drawnStops, renderBusList,
} from "./rider-routes.js";
import { panel, openPanel, closePanel, renderPanel, renderPanelAge } from "./rider-details.js";

// --- the live feed ---------------------------------------------------------------------------
let liveStatus = "connecting";
const statusLog = []; // every status change, for tests
let routesLoaded = false;
let ready = false; // lines drawn and the map fitted to the chosen routes: the map stays put

function onLiveMessage(message) {
  if (message.type === "error") { setProblem("live", message.detail); return; }
  if (message.type !== "snapshot" && message.type !== "update") return;
  if (message.type === "snapshot") {
    const present = new Set(message.vehicles.map((v) => v.vehicle_id));
    for (const id of [...buses.keys()]) if (!present.has(id)) buses.delete(id);
  }
  // The server filters by the subscription too; this also drops what was in flight before a
  // new subscription reached it.
  for (const v of message.vehicles) {
    if (wanted(v)) upsertBus(v); else buses.delete(v.vehicle_id);
  }
  for (const id of message.removed || []) buses.delete(id);
  if (page.busLayer) page.busLayer.invalidate();
  if (message.type === "snapshot") renderBusList();
}

function onLiveStatus(status) {
  liveStatus = status;
  statusLog.push(status);
  renderStatus();
}

function renderStatus() {
  const el = $("status");
  el.textContent = BT.t(liveStatus);
  el.classList.toggle("live", liveStatus === "live");
  document.body.classList.toggle("not-live", liveStatus === "reconnecting");
  const notice = $("map-notice");
  if (notice && notice.dataset.kind !== "fixed") {
    notice.hidden = liveStatus !== "reconnecting";
    notice.textContent = BT.t("not_live_notice");
  }
}

// --- page furniture --------------------------------------------------------------------------
// Once a second: the panel's "updated N s ago" and the bus count.
function tick() {
  renderPanelAge();
  $("count").textContent = BT.t("n_buses", { n: visibleBusCount() });
  if (page.busLayer) page.busLayer.invalidate(); // staleness changes with time alone
}

function wireControls() {
  BT.languageSwitch($("lang"));
  $("route-search").addEventListener("input", renderRouteList);
  $("route-list").addEventListener("change", (event) => {
    const box = event.target;
    if (box.type !== "checkbox") return;
    const ids = new Set(selected);
    if (box.checked) ids.add(box.value); else ids.delete(box.value);
    setSelection([...ids]);
  });
  $("route-clear").addEventListener("click", () => setSelection([]));
  $("routes-toggle").addEventListener("click", () => {
    const open = document.body.classList.toggle("routes-open");
    $("routes-toggle").setAttribute("aria-expanded", String(open));
    if (open) $("route-search").focus();
  });
  $("details-close").addEventListener("click", closePanel);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && panel) closePanel();
  });
  // buttons inside the panel and the bus list open a stop or a bus
  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-stop], [data-bus]");
    if (!target || !target.closest("#details, #bus-list")) return;
    if (target.dataset.stop) openPanel("stop", target.dataset.stop, target);
    else openPanel("bus", target.dataset.bus, target);
  });
  document.addEventListener("bt:language", () => {
    renderStatus();
    renderRouteList();
    renderRouteSummary();
    renderBusList(true);
    renderPanel();
    tick();
    const notice = $("map-notice");
    if (notice.dataset.kind === "fixed" && !routesById.size) notice.textContent = BT.t("no_routes_notice");
  });
}

function makeMap(config) {
  page.lineRenderer = L.canvas({ padding: 0.5 });
  const map = L.map("map", { preferCanvas: true, renderer: page.lineRenderer, keyboard: true });
  page.map = map;
  L.tileLayer(config.tiles_url, { attribution: config.tiles_attribution, maxZoom: 19 }).addTo(map);
  if (config.bounds) {
    const [minLon, minLat, maxLon, maxLat] = config.bounds;
    map.fitBounds([[minLat, minLon], [maxLat, maxLon]]);
  } else {
    map.setView([0, 0], 2);
  }
  addStopsLayer(map);
  const busLayer = new BusLayer();
  page.busLayer = busLayer;
  busLayer.addTo(map);
  const notice = L.DomUtil.create("div", "map-notice", map.getContainer());
  notice.id = "map-notice";
  notice.hidden = true;
  notice.setAttribute("aria-hidden", "true"); // the status pill already says it, politely
  map.on("click", (event) => {
    const id = busLayer.hitTest(event.containerPoint);
    if (id) { openPanel("bus", id); return; }
    const stop = hitStop(event.containerPoint);
    if (stop) openPanel("stop", stop.stop_id);
  });
  let pending = null;
  map.on("moveend", () => { clearTimeout(pending); pending = setTimeout(loadViewStops, 200); });
}

async function main() {
  wireControls();
  renderStatus();
  let config;
  try {
    config = await BT.loadConfig();
  } catch (e) {
    liveStatus = "reconnecting";
    renderStatus();
    setProblem("config", BT.t("error_api", { detail: e.message }));
    return;
  }
  makeMap(config);
  try {
    await loadRoutes();
    routesLoaded = true;
  } catch (e) {
    setProblem("routes", BT.t("routes_error", { detail: e.message }));
  }
  // Ids in the URL that the feed does not have are dropped (and said); if the route list
  // could not be loaded, they are kept: the server still filters by them.
  const fromUrl = selectionFromUrl();
  const unknown = routesLoaded ? fromUrl.filter((id) => !routesById.has(id)) : [];
  if (unknown.length) setProblem("url", unknown.map((id) => BT.t("unknown_route", { id })).join(" "));
  const known = fromUrl.filter((id) => !unknown.includes(id));
  page.live = new BT.LiveSocket({
    onMessage: onLiveMessage,
    onStatus: onLiveStatus,
    subscription: known.length ? { routes: known, bbox: null } : null,
  });
  const stopsLoaded = setSelection(known, { fit: false });
  const linesLoaded = loadLines().catch((e) => {
    setProblem("lines", BT.t("lines_error", { detail: e.message }));
  });
  Promise.all([stopsLoaded, linesLoaded]).then(() => {
    fitToSelection({ animate: false });
    ready = true;
  });
  setInterval(tick, 1000);
  setInterval(() => renderBusList(), 2000);
  tick();
}

// --- for tests and the bench -----------------------------------------------------------------
window.BT_RIDER = {
  get map() { return page.map; },
  get layer() { return page.busLayer; },
  get socket() { return page.live; },
  get status() { return liveStatus; },
  get ready() { return ready; },
  statusLog,
  selected,
  buses,
  // The buses as drawn in the last frame: page coordinates, the drawn (gliding) position.
  drawnBuses() {
    if (!page.map) return [];
    const box = page.map.getContainer().getBoundingClientRect();
    const out = [];
    for (const [id, bus] of buses) {
      if (!bus.shown) continue;
      const ll = L.CRS.EPSG3857.pointToLatLng(L.point(bus.wx, bus.wy), 0);
      out.push({
        id, route_id: bus.v.route_id ?? null, stale: bus.stale, heading: bus.heading,
        x: box.left + bus.x, y: box.top + bus.y, lat: ll.lat, lon: ll.lng,
      });
    }
    return out;
  },
  // Page coordinates of a stop on the map (for tests that click one).
  stopPoint(stopId) {
    const stop = drawnStops.find((s) => s.stop_id === stopId);
    if (!stop) return null;
    const box = page.map.getContainer().getBoundingClientRect();
    const p = page.map.latLngToContainerPoint(stop.latlng);
    return { x: box.left + p.x, y: box.top + p.y };
  },
  get drawnStops() { return drawnStops; },
  // What a click on a bus or a stop opens (for tests that need one where buses crowd).
  open(kind, id) { openPanel(kind, id); },
};

document.addEventListener("DOMContentLoaded", main);
