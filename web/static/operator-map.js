// The operator's map panel: the network, a dot per live bus coloured by its state and delay, the
// chosen bus with its route drawn thick, and the box under the map with the chosen bus's details.
// A dot chooses its vehicle.
// An ES module imported by operator.js; uses Leaflet's global `L` and common.js's global `BT`.

import {
  $, page, ageOf, shownState, delayClass, minutesText, number, reasonText, element, selectVehicle,
} from "./operator-state.js";

// --- the map ---------------------------------------------------------------------------------

const map = {
  leaflet: null,
  network: null, // the GeoJSON of every shape
  buses: null, // layer of small dots, one per bus
  dots: new Map(), // vehicle_id → circle marker
  routeLayer: null, // the selected bus's route, drawn thick
  marker: null, // the selected bus
};

export function createMap(config) {
  const leaflet = L.map("map", { preferCanvas: true, zoomControl: true });
  leaflet.createPane("routes").style.zIndex = 350; // under the buses (overlayPane: 400)
  if (config.bounds) {
    const [minLon, minLat, maxLon, maxLat] = config.bounds;
    leaflet.fitBounds([[minLat, minLon], [maxLat, maxLon]]);
  } else {
    leaflet.setView([0, 0], 2);
  }
  L.tileLayer(config.tiles_url, { attribution: config.tiles_attribution, maxZoom: 19 })
    .addTo(leaflet);
  map.routeRenderer = L.canvas({ pane: "routes" });
  map.buses = L.layerGroup().addTo(leaflet);
  map.leaflet = leaflet;
  page.map = leaflet; // the alerts draw on it too (operator-alerts.js)
}

export function drawNetwork(network) {
  map.network = network;
  page.network = network;
  L.geoJSON(network, {
    interactive: false,
    pane: "routes",
    renderer: map.routeRenderer,
    style: (feature) => ({ color: feature.properties.color || "#5a6b7d", weight: 2, opacity: 0.45 }),
    filter: (feature) => feature.geometry.type === "LineString",
  }).addTo(map.leaflet);
}

function busColor(v) {
  const state = shownState(v);
  if (state === "in_service") {
    return { late: "#c0392b", early: "#b9770e", "on-time": "#1d6b34" }[delayClass(v.delay_s)]
      || "#1d6b34";
  }
  return { layover: "#2f6fb3", off_route: "#8e3bb5", stale: "#9a9a9a" }[state] || "#606060";
}

export function renderMapBuses() {
  if (!map.leaflet) return;
  for (const [id, dot] of map.dots) {
    if (!page.vehicles.has(id)) {
      dot.remove();
      map.dots.delete(id);
    }
  }
  for (const v of page.vehicles.values()) {
    let dot = map.dots.get(v.vehicle_id);
    if (!dot) {
      dot = L.circleMarker([v.lat, v.lon], { radius: 4, weight: 1, color: "#fff", fillOpacity: 0.9 })
        .on("click", () => selectVehicle(v.vehicle_id))
        .addTo(map.buses);
      map.dots.set(v.vehicle_id, dot);
    } else {
      dot.setLatLng([v.lat, v.lon]);
    }
    dot.setStyle({ fillColor: busColor(v) });
  }
  renderSelectedOnMap(false);
}

function routeFeatures(routeId) {
  if (!map.network || !routeId) return [];
  return map.network.features.filter((f) => f.geometry.type === "LineString"
    && (f.properties.route_id === routeId || (f.properties.route_ids || []).includes(routeId)));
}

export function renderSelectedOnMap(recentre) {
  const v = page.vehicles.get(page.selectedId);
  if (!map.leaflet) return;
  if (!v) {
    map.marker?.remove();
    map.marker = null;
    map.routeLayer?.remove();
    map.routeLayer = null;
    return;
  }
  if (!map.routeLayer || map.routeLayer.routeId !== v.route_id) {
    map.routeLayer?.remove();
    const route = page.routes.get(v.route_id);
    map.routeLayer = L.geoJSON({ type: "FeatureCollection", features: routeFeatures(v.route_id) }, {
      interactive: false,
      pane: "routes",
      renderer: map.routeRenderer,
      style: { color: (route && route.color) || "#12355b", weight: 5, opacity: 0.9 },
    }).addTo(map.leaflet);
    map.routeLayer.routeId = v.route_id;
  }
  const where = [v.lat, v.lon];
  if (!map.marker) {
    map.marker = L.marker(where, {
      icon: L.divIcon({ className: "selected-bus", iconSize: [22, 22] }),
      keyboard: false,
      zIndexOffset: 1000,
    }).addTo(map.leaflet);
  } else {
    map.marker.setLatLng(where);
  }
  map.marker.getElement()?.setAttribute("data-id", v.vehicle_id);
  map.marker.getElement()?.setAttribute("title", v.vehicle_id);
  if (recentre) map.leaflet.setView(where, Math.max(map.leaflet.getZoom(), 14));
  else if (!map.leaflet.getBounds().contains(where)) map.leaflet.panTo(where);
}

export function renderSelected() {
  const box = $("selected");
  const id = page.selectedId;
  if (!id) {
    box.replaceChildren(element("p", { className: "hint", text: BT.t("op_pick") }));
    return;
  }
  const v = page.vehicles.get(id);
  if (!v) {
    box.replaceChildren(element("p", { className: "hint", text: BT.t("op_gone", { id }) }));
    return;
  }
  const route = page.routes.get(v.route_id);
  const items = [
    ["d_vehicle", v.vehicle_id],
    ["d_route", route ? `${route.short_name} · ${route.long_name}` : v.route_id || "–"],
    ["d_trip", [page.headsigns.get(v.trip_id), v.trip_id].filter(Boolean).join(" · ") || "–"],
    ["d_state", BT.stateText(shownState(v))],
    ["d_delay", typeof v.delay_s === "number" ? `${BT.delayText(v.delay_s)} (${minutesText(v.delay_s)})` : "–"],
    ["d_seen", `${BT.timeText(v.observed_at_s, true)} · ${BT.ageText(ageOf(v))}`],
  ];
  if (typeof v.offset_m === "number") items.push(["d_offset", `${number(v.offset_m)} m`]);
  if (v.reason) items.push(["d_reason", reasonText(v.reason)]);
  const list = element("dl", { className: "details" });
  for (const [key, value] of items) {
    list.append(element("dt", { text: BT.t(key) }), element("dd", { text: value }));
  }
  box.replaceChildren(list);
}
