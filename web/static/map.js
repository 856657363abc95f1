// The first live map: route lines, and every bus moving as the tracker sees it.
// Plain JavaScript, no build step. Data: /api/config, /api/network.geojson and /ws/live.
"use strict";

const STATE_COLORS = {
  in_service: "#1d6b34",
  layover: "#2f6fb3",
  off_route: "#8e3bb5",
  not_matched: "#707070",
};
const LATE_COLOR = "#c0392b";
const EARLY_COLOR = "#d68910";
const MOVE_MS = 1000; // buses glide to their new position instead of jumping

const statusEl = document.getElementById("status");
const countEl = document.getElementById("count");
const errorEl = document.getElementById("error");

function showError(message) {
  errorEl.textContent = message;
  errorEl.hidden = false;
}

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${url}: ${response.status} ${detail}`);
  }
  return response.json();
}

function busColor(v) {
  if (v.state === "in_service" && typeof v.delay_s === "number") {
    if (v.delay_s > 300) return LATE_COLOR;
    if (v.delay_s < -60) return EARLY_COLOR;
  }
  return STATE_COLORS[v.state] || STATE_COLORS.not_matched;
}

function delayText(delay_s) {
  if (typeof delay_s !== "number") return "";
  const minutes = Math.round(delay_s / 60);
  if (minutes === 0) return "on time";
  return minutes > 0 ? `${minutes} min late` : `${-minutes} min early`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

async function main() {
  let config;
  try {
    config = await getJson("/api/config");
  } catch (e) {
    showError(`The tracker did not answer: ${e.message}`);
    return;
  }
  const renderer = L.canvas({ padding: 0.5 });
  const map = L.map("map", { preferCanvas: true, renderer });
  L.tileLayer(config.tiles_url, { attribution: config.tiles_attribution, maxZoom: 19 }).addTo(map);
  const [minLon, minLat, maxLon, maxLat] = config.bounds || [-180, -85, 180, 85];
  map.fitBounds([[minLat, minLon], [maxLat, maxLon]]);

  getJson("/api/network.geojson").then((routes) => {
    L.geoJSON(routes, {
      renderer,
      style: (f) => ({ color: f.properties.color || "#3366cc", weight: 3, opacity: 0.6 }),
    }).addTo(map);
  }).catch((e) => showError(`Routes could not be loaded: ${e.message}`));

  const buses = new Map(); // vehicle_id -> {marker, state, from, to, startMs}
  let serverOffsetS = 0; // server clock minus browser clock

  function popupHtml(v) {
    const age = Math.max(0, Date.now() / 1000 + serverOffsetS - v.observed_at_s);
    const rows = [
      ["Bus", v.vehicle_id], ["Route", v.route_id || "—"], ["Trip", v.trip_id || "—"],
      ["State", v.state.replace("_", " ")], ["Delay", delayText(v.delay_s) || "—"],
      ["Updated", `${Math.round(age)} s ago`],
    ];
    return `<dl class="bus-popup">${rows.map(([k, val]) =>
      `<dt>${k}</dt><dd>${escapeHtml(val)}</dd>`).join("")}</dl>`;
  }

  function style(v, nowS) {
    const stale = nowS - v.observed_at_s > config.stale_after_s;
    const color = busColor(v);
    return {
      radius: 6, weight: 2, color: stale ? "#9a9a9a" : "#ffffff",
      fillColor: stale ? "#d0d0d0" : color, fillOpacity: stale ? 0.5 : 0.95,
    };
  }

  function upsert(v, nowS) {
    const to = L.latLng(v.lat, v.lon);
    const bus = buses.get(v.vehicle_id);
    if (!bus) {
      const marker = L.circleMarker(to, { renderer, ...style(v, nowS) }).addTo(map);
      marker.bindPopup(() => popupHtml(buses.get(v.vehicle_id).state));
      buses.set(v.vehicle_id, { marker, state: v, from: to, to, startMs: 0 });
      return;
    }
    bus.from = bus.marker.getLatLng();
    bus.to = to;
    bus.startMs = performance.now();
    bus.state = v;
    bus.marker.setStyle(style(v, nowS));
  }

  function remove(id) {
    const bus = buses.get(id);
    if (bus) { bus.marker.remove(); buses.delete(id); }
  }

  function animate(nowMs) {
    for (const bus of buses.values()) {
      if (bus.startMs === 0) continue;
      const t = Math.min(1, (nowMs - bus.startMs) / MOVE_MS);
      bus.marker.setLatLng([
        bus.from.lat + (bus.to.lat - bus.from.lat) * t,
        bus.from.lng + (bus.to.lng - bus.from.lng) * t,
      ]);
      if (t === 1) bus.startMs = 0;
    }
    requestAnimationFrame(animate);
  }
  requestAnimationFrame(animate);

  function restyleStale() {
    const nowS = Date.now() / 1000 + serverOffsetS;
    for (const bus of buses.values()) bus.marker.setStyle(style(bus.state, nowS));
    countEl.textContent = `${buses.size} buses`;
  }
  setInterval(restyleStale, 5000);

  let retryMs = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/live`);
    socket.onopen = () => {
      retryMs = 500;
      statusEl.textContent = "live";
      statusEl.classList.add("live");
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "error") { showError(message.detail); return; }
      serverOffsetS = message.server_time_s - Date.now() / 1000;
      if (message.type === "snapshot") {
        for (const id of [...buses.keys()]) remove(id);
      }
      for (const v of message.vehicles) upsert(v, message.server_time_s);
      for (const id of message.removed) remove(id);
      countEl.textContent = `${buses.size} buses`;
    };
    socket.onclose = () => {
      statusEl.textContent = "not live: reconnecting…";
      statusEl.classList.remove("live");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    };
  }
  connect();
}

main();
