// The rider's details panel (a bottom sheet on phones): a bus's route, headsign, delay, age and
// next stops with their predicted ranges, or a stop's buses on their way and its timetable
// (both drawn by rider-arrivals.js); refreshed every 15 s while open, its "updated N s ago" and
// "in 4–7 min" every second (rider.js's tick calls renderPanelAge).
// An ES module imported by rider.js; uses common.js's global `BT`.
// Data: /api/vehicles/{id}, /api/stops/{id}.

import { $, esc, buses, routesById, page, routeBadge, delayClass } from "./rider-state.js";
import { drawnStops } from "./rider-routes.js";
import { stopBodyHtml, nextStopsHtml, nextTripsHtml, renderArrivalClocks } from "./rider-arrivals.js";

const DETAIL_REFRESH_MS = 15000;

// --- the details panel -----------------------------------------------------------------------
export let panel = null; // {kind: "bus"|"stop", id, data, error, opener}
let panelRequest = 0;
let panelTimer = null;

export function openPanel(kind, id, opener = null) {
  panel = { kind, id, data: null, error: null, gone: false, opener };
  page.busLayer.selectedId = kind === "bus" ? id : null;
  page.busLayer.invalidate();
  const el = $("details");
  el.hidden = false;
  el.dataset.kind = kind;
  document.body.classList.add("has-details");
  renderPanel();
  $("details-title").focus({ preventScroll: true });
  refreshPanel();
  clearInterval(panelTimer);
  panelTimer = setInterval(refreshPanel, DETAIL_REFRESH_MS);
}

export function closePanel() {
  if (!panel) return;
  const opener = panel.opener;
  panel = null;
  clearInterval(panelTimer);
  page.busLayer.selectedId = null;
  page.busLayer.invalidate();
  $("details").hidden = true;
  document.body.classList.remove("has-details");
  (opener && opener.isConnected ? opener : $("map")).focus({ preventScroll: true });
}

async function refreshPanel() {
  if (!panel) return;
  const token = ++panelRequest;
  const { kind, id } = panel;
  const url = kind === "bus"
    ? `/api/vehicles/${encodeURIComponent(id)}?trail_s=0`
    : `/api/stops/${encodeURIComponent(id)}?limit=8`;
  try {
    const data = await BT.getJson(url);
    if (token !== panelRequest || !panel) return;
    Object.assign(panel, { data, error: null, gone: false });
  } catch (e) {
    if (token !== panelRequest || !panel) return;
    // a 404 for a bus: it left the live view (not heard from for too long)
    if (kind === "bus" && / 404 /.test(e.message)) panel.gone = true; else panel.error = e.message;
  }
  renderPanel();
}

export function renderPanel() {
  if (!panel) return;
  const focusedStop = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.stop || document.activeElement.dataset.bus : null;
  const title = $("details-title");
  const body = $("details-body");
  if (panel.kind === "bus") renderBusPanel(title, body); else renderStopPanel(title, body);
  if (focusedStop) {
    const again = body.querySelector(`[data-stop="${CSS.escape(focusedStop)}"], [data-bus="${CSS.escape(focusedStop)}"]`);
    if (again) again.focus();
  }
}

function renderBusPanel(title, body) {
  const bus = buses.get(panel.id);
  const vehicle = (panel.data && panel.data.vehicle) || (bus && bus.v) || null;
  const trip = panel.data && panel.data.trip;
  const route = vehicle && routesById.get(vehicle.route_id);
  title.textContent = BT.t("bus_title", { route: route ? route.short_name : vehicle?.route_id || "" }).trim();
  if (panel.gone) { body.innerHTML = `<p>${esc(BT.t("bus_gone"))}</p>`; return; }
  if (!vehicle) { body.innerHTML = `<p>${esc(panel.error ? BT.t("detail_error", { detail: panel.error }) : BT.t("loading"))}</p>`; return; }
  const v = (bus && bus.v) || vehicle; // the live stream is fresher than the detail answer
  const rows = [];
  if (trip) rows.push([BT.t("towards"), esc(trip.headsign), "headsign"]);
  const delay = delayHtml(v.delay_s, v.headway_s);
  if (delay) rows.push([BT.t("delay"), delay, "delay"]);
  rows.push([BT.t("position"), `<span data-age>${esc(ageLine(v))}</span>`, "age"]);
  if (v.state !== "in_service") rows.push([BT.t("state"), esc(BT.stateText(v.state)), "state"]);
  let html = `<p class="route-line">${routeBadge(v.route_id)}
    <span class="route-name">${esc(route ? route.long_name : "")}</span></p>
    <p class="vehicle-id">${esc(BT.t("vehicle", { id: v.vehicle_id }))}</p>
    <dl class="facts">${rows.map(([k, val, cls]) => `<dt>${esc(k)}</dt><dd class="${cls}">${val}</dd>`).join("")}</dl>`;
  if (panel.error) html += `<p class="panel-error">${esc(BT.t("detail_error", { detail: panel.error }))}</p>`;
  if (!panel.data) {
    html += `<p>${esc(BT.t("loading"))}</p>`;
  } else if (!trip) {
    html += `<p>${esc(BT.t("not_on_trip"))}</p>`;
  } else {
    html += nextStopsHtml(trip) + nextTripsHtml(panel.data.predictions);
  }
  body.innerHTML = html;
}

function renderStopPanel(title, body) {
  const d = panel.data;
  const known = drawnStops.find((s) => s.stop_id === panel.id);
  title.textContent = BT.t("stop_title", { name: d ? d.name : known ? known.name : panel.id });
  if (!d) { body.innerHTML = `<p>${esc(panel.error ? BT.t("detail_error", { detail: panel.error }) : BT.t("loading"))}</p>`; return; }
  let html = `<p class="stop-routes">${d.route_ids.map(routeBadge).join(" ")}</p>`;
  if (panel.error) html += `<p class="panel-error">${esc(BT.t("detail_error", { detail: panel.error }))}</p>`;
  html += stopBodyHtml(d);
  body.innerHTML = html;
}

function delayHtml(delayS, headwayS) {
  if (typeof delayS === "number") {
    return `<span class="${delayClass(delayS)}">${esc(BT.delayText(delayS))}</span>`;
  }
  if (typeof headwayS === "number") return esc(BT.t("every_min", { n: Math.round(headwayS / 60) }));
  return "";
}

function ageLine(v) {
  const age = BT.serverNow() - v.observed_at_s;
  const text = BT.ageText(age);
  return age > BT.config.stale_after_s ? `${text} (${BT.t("stale_note")})` : text;
}

// The open panel's "updated N s ago" and "in 4–7 min" (rider.js calls this once a second).
export function renderPanelAge() {
  if (panel) renderArrivalClocks($("details-body"));
  if (panel && panel.kind === "bus") {
    const el = $("details-body").querySelector("[data-age]");
    const bus = buses.get(panel.id);
    const v = (bus && bus.v) || (panel.data && panel.data.vehicle);
    if (el && v) el.textContent = ageLine(v);
  }
}
