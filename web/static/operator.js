// The operator's dashboard (`/operator`): the live fleet table (sortable, filterable), a small
// map of the chosen bus, per-route on-time shares, delay spreads and headways, the fleet's delay
// over the last hour, the headway adherence of frequency lines, a time–distance diagram of a
// route, the live alerts, the accuracy of the arrival predictions, and the problems the tracker
// reports.
// This file is the page's entry point and wiring: the live socket and what it redraws, choosing
// a vehicle, the polls, the start (retried until the tracker answers) and the language switch.
// The parts are ES modules beside it (no build step), loaded by operator.html as
// <script type="module"> after Leaflet (the global `L`) and common.js (the global `BT`):
//   operator-strings.js   the page's texts in English, French and Arabic
//   operator-state.js     the page's state, the small helpers, selectVehicle
//   operator-fleet.js     the fleet table and the totals
//   operator-map.js       the map and the chosen bus's details under it
//   operator-routes.js    per-route on-time shares, delay spreads and headways (/api/fleet)
//   operator-chart.js     the fleet's delay over the last hour
//   operator-adherence.js the frequency lines' headway adherence (sampled from /api/fleet)
//   operator-diagram.js   a route's time–distance diagram (/api/operations/time-distance)
//   operator-alerts.js    the live alerts and showing one on the map (/api/operations/alerts)
//   operator-accuracy.js  the predictions' accuracy by horizon (/api/predictions/accuracy)
//   operator-problems.js  stale, off-route and unmatched buses, rejected messages (/api/problems)
// Data: /api/config, /api/routes, /api/network.geojson once; /ws/live for the table, the map and
// the alerts (its `alerts` messages); /api/fleet and /api/problems every 10 s, the diagram every
// 15 s, the alerts (in case a message was missed) and the accuracy every 30 s; /api/history once,
// to seed the delay chart.
// `window.BT_OPERATOR` exposes the map and what the parts show, for tests.

import "./operator-strings.js";
import { $, page, setText, setError, apiError, onSelectVehicle } from "./operator-state.js";
import { renderTable, setUpTableControls } from "./operator-fleet.js";
import {
  createMap, drawNetwork, renderMapBuses, renderSelectedOnMap, renderSelected,
} from "./operator-map.js";
import { renderRoutes, pollFleet } from "./operator-routes.js";
import { SAMPLE_S, sampleLive, seedChart, drawChart } from "./operator-chart.js";
import { renderProblems, pollProblems } from "./operator-problems.js";
import { sampleAdherence, drawAdherence } from "./operator-adherence.js";
import { startDiagram, draw as drawDiagram, renderDiagramText, diagramShown } from "./operator-diagram.js";
import {
  startAlerts, onAlertsMessage, renderAlerts, alertsShown, alertLog,
} from "./operator-alerts.js";
import { startAccuracy, renderAccuracy } from "./operator-accuracy.js";

const POLL_MS = 10000; // /api/fleet and /api/problems
const RENDER_MS = 1000; // the table and the map are redrawn at most this often
const RETRY_MS = 5000; // when the first requests fail

// --- the chosen vehicle ----------------------------------------------------------------------
// What selectVehicle (operator-state.js) does when a row, a dot or a problem calls it.

onSelectVehicle(showVehicle);

function showVehicle(id) {
  page.selectedId = id;
  renderTable();
  renderSelectedOnMap(true);
  renderSelected();
  drawDiagram(); // its line stands out
  if (window.matchMedia("(max-width: 900px)").matches) {
    $("map").scrollIntoView({ behavior: "smooth", block: "center" });
  }
}

// --- live updates ----------------------------------------------------------------------------

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => {
    renderPending = false;
    renderLive();
  }, RENDER_MS);
}

function renderLive() {
  renderTable();
  renderMapBuses();
  renderSelected();
}

function onMessage(message) {
  if (message.type === "error") {
    setError("live", message.detail);
    return;
  }
  if (message.type === "alerts") {
    onAlertsMessage(message);
    return;
  }
  if (message.type !== "snapshot" && message.type !== "update") return; // "revised": the past
  if (message.type === "snapshot") page.vehicles.clear();
  for (const v of message.vehicles || []) page.vehicles.set(v.vehicle_id, v);
  for (const id of message.removed || []) page.vehicles.delete(id);
  if (message.type === "snapshot") {
    renderLive();
    if (!page.sampledLive) sampleLive(); // the chart's "now", before the first minute passes
  } else {
    scheduleRender();
  }
}

function renderStatus() {
  const el = $("status");
  el.classList.toggle("live", page.socketStatus === "live");
  setText(el, BT.t(page.socketStatus));
}

function onStatus(status) {
  page.socketStatus = status;
  renderStatus();
}

// --- start -----------------------------------------------------------------------------------

async function loadStatic() {
  const [config, routes, network] = await Promise.all([
    BT.loadConfig(), BT.getJson("/api/routes"), BT.getJson("/api/network.geojson"),
    BT.loadSession(),
  ]);
  page.staleAfterS = config.stale_after_s;
  for (const r of routes.routes) page.routes.set(r.route_id, r);
  return { config, network };
}

async function start() {
  let loaded;
  try {
    loaded = await loadStatic();
    setError("start", null);
  } catch (error) {
    setError("start", apiError(error));
    setTimeout(start, RETRY_MS);
    return;
  }
  createMap(loaded.config);
  drawNetwork(loaded.network);
  new BT.LiveSocket({ onMessage, onStatus });
  pollRoutes();
  pollProblems();
  setInterval(pollRoutes, POLL_MS);
  setInterval(pollProblems, POLL_MS);
  startAlerts();
  startDiagram();
  startAccuracy();
  setInterval(scheduleRender, RENDER_MS); // ages and staleness move with the clock
  seedChart().then(() => setInterval(sampleLive, SAMPLE_S * 1000));
  new ResizeObserver(() => drawChart()).observe($("delay-chart"));
  new ResizeObserver(() => drawAdherence()).observe($("adherence-chart"));
}

async function pollRoutes() {
  await pollFleet();
  sampleAdherence();
}

function onLanguage() {
  renderStatus();
  renderTable();
  renderSelected();
  renderRoutes();
  renderProblems();
  drawChart();
  drawAdherence();
  renderDiagramText();
  renderAlerts();
  renderAccuracy();
}

window.BT_OPERATOR = {
  get map() { return page.map; },
  get status() { return page.socketStatus; },
  alertsShown,
  alertLog,
  diagramShown,
};

document.addEventListener("DOMContentLoaded", () => {
  BT.languageSwitch($("language"));
  document.addEventListener("bt:language", onLanguage);
  setUpTableControls();
  onStatus("connecting");
  drawChart();
  start();
});
