// The operator's live alerts: bunching and gapping (with the suggested hold), trips with no bus
// (ghosts), frequency trips short of buses, buses that stopped reporting, detours. Read from
// /api/operations/alerts at start and every 30 s (the fallback: a client that missed a
// websocket message reads it there), and kept up to date by the websocket's `alerts` messages
// (opened / updated / closed). Sorted by severity (critical first), then the newest; filtered by
// route. Each alert says its kind, route, vehicles, since when and what to do; its button shows
// it on the map (its position; a detour's path as a line; a ghost trip's first stop; a short
// service's route), its vehicle buttons choose the vehicle as a table row does; a ghost trip's
// "Mark cancelled" button, and the cancelled trips' list with "Undo", are
// operator-cancellations.js's.
// An ES module imported by operator.js; uses Leaflet's global `L` and common.js's global `BT`.

import {
  $, page, number, routeName, shortId, element, setText, setError, apiError, selectVehicle,
} from "./operator-state.js";
import { cancelButton, startCancellations } from "./operator-cancellations.js";

const REREAD_MS = 30000;
const RENDER_MS = 500; // the list is redrawn at most this often (updates come with every fix)
const SEVERITY_ORDER = { critical: 0, warning: 1, info: 2 };

BT.addStrings({
  en: {
    op_alerts: "Alerts", op_alerts_note: "Most severe first, then the newest. Choose one to show it on the map.",
    op_alerts_all: "all routes ({n})", op_alerts_route: "{route} ({n})",
    op_alerts_none: "No alert now.", op_alerts_none_route: "No alert on this route now.",
    sev_critical: "critical", sev_warning: "warning", sev_info: "info",
    kind_bunching: "Bunching", kind_gapping: "Gap in service", kind_ghost_trip: "Trip with no bus",
    kind_short_service: "Short of buses", kind_silent_vehicle: "Bus not reporting", kind_detour: "Detour",
    al_route: "route {route}", al_since: "since {time} ({ago})", al_due: "due {time}",
    al_pair: "{follower} is {gap} min behind {leader}; {scheduled} min scheduled",
    al_ghost: "Trip {trip} was due to leave {stop} at {time}; no bus reports on it.",
    al_short: "{seen} of the {needed} buses trip {trip} needs are running (every {headway} min).",
    al_silent: "{vehicle} was last heard at {time} on trip {trip}.",
    al_detour: "{vehicle} left its route at {time}, up to {m} m away ({fixes} fixes off it).",
    al_detour_back: "It rejoined at {time}.",
    do_hold: "Hold {vehicle} for {n} s at its next stop.",
    do_no_hold: "No hold evens the gaps out; watch it.",
    do_ghost: "Find the block's bus or send a spare; riders see “no bus reported”.",
    do_short: "Add a bus or space out those running.",
    do_silent: "Call the driver; the device may be off.",
    do_detour: "Confirm the detour and tell riders at the stops it misses.",
    al_vehicles: "Vehicles:", al_show: "Show on the map", al_on_map: "On the map: {what}.",
    al_no_position: "{what}: no position to show.", al_clear: "Clear",
    al_left: "left the route", al_rejoined: "rejoined",
  },
  fr: {
    op_alerts: "Alertes", op_alerts_note: "Les plus graves d'abord, puis les plus récentes. Choisissez-en une pour la voir sur la carte.",
    op_alerts_all: "toutes les lignes ({n})", op_alerts_route: "{route} ({n})",
    op_alerts_none: "Aucune alerte.", op_alerts_none_route: "Aucune alerte sur cette ligne.",
    sev_critical: "critique", sev_warning: "attention", sev_info: "info",
    kind_bunching: "Bus groupés", kind_gapping: "Trou de service", kind_ghost_trip: "Course sans bus",
    kind_short_service: "Bus manquants", kind_silent_vehicle: "Bus muet", kind_detour: "Déviation",
    al_route: "ligne {route}", al_since: "depuis {time} ({ago})", al_due: "prévue à {time}",
    al_pair: "{follower} est à {gap} min derrière {leader} ; {scheduled} min prévues",
    al_ghost: "La course {trip} devait partir de {stop} à {time} ; aucun bus ne la signale.",
    al_short: "{seen} des {needed} bus nécessaires à la course {trip} roulent (toutes les {headway} min).",
    al_silent: "{vehicle} n'a plus émis depuis {time}, course {trip}.",
    al_detour: "{vehicle} a quitté son itinéraire à {time}, jusqu'à {m} m de celui-ci ({fixes} positions).",
    al_detour_back: "Il l'a rejoint à {time}.",
    do_hold: "Retenir {vehicle} {n} s à son prochain arrêt.",
    do_no_hold: "Aucune retenue n'égalise les écarts ; à surveiller.",
    do_ghost: "Trouver le bus du service ou envoyer un bus de réserve ; les voyageurs voient « aucun bus signalé ».",
    do_short: "Ajouter un bus ou espacer ceux qui roulent.",
    do_silent: "Appeler le conducteur ; l'appareil est peut-être éteint.",
    do_detour: "Confirmer la déviation et prévenir les voyageurs des arrêts non desservis.",
    al_vehicles: "Véhicules :", al_show: "Voir sur la carte", al_on_map: "Sur la carte : {what}.",
    al_no_position: "{what} : aucune position à montrer.", al_clear: "Effacer",
    al_left: "sortie de l'itinéraire", al_rejoined: "retour",
  },
  ar: {
    op_alerts: "التنبيهات", op_alerts_note: "الأخطر أولًا ثم الأحدث. اختر تنبيهًا لإظهاره على الخريطة.",
    op_alerts_all: "كل الخطوط ({n})", op_alerts_route: "{route} ({n})",
    op_alerts_none: "لا تنبيهات الآن.", op_alerts_none_route: "لا تنبيهات على هذا الخط الآن.",
    sev_critical: "حرج", sev_warning: "تحذير", sev_info: "معلومة",
    kind_bunching: "تكتل الحافلات", kind_gapping: "فجوة في الخدمة", kind_ghost_trip: "رحلة بلا حافلة",
    kind_short_service: "نقص في الحافلات", kind_silent_vehicle: "حافلة لا ترسل", kind_detour: "تحويلة",
    al_route: "الخط {route}", al_since: "منذ {time} ({ago})", al_due: "مقررة {time}",
    al_pair: "{follower} خلف {leader} بـ{gap} دقيقة؛ المقرر {scheduled} دقيقة",
    al_ghost: "كان يجب أن تغادر الرحلة {trip} من {stop} في {time}؛ لا حافلة تُبلغ عنها.",
    al_short: "تعمل {seen} من أصل {needed} حافلات تحتاجها الرحلة {trip} (كل {headway} دقيقة).",
    al_silent: "آخر إشارة من {vehicle} كانت في {time} على الرحلة {trip}.",
    al_detour: "غادرت {vehicle} مسارها في {time}، حتى {m} م بعيدًا عنه ({fixes} مواقع).",
    al_detour_back: "عادت إليه في {time}.",
    do_hold: "أوقف {vehicle} لمدة {n} ث في محطتها التالية.",
    do_no_hold: "لا يوازن أي توقيف الفواصل؛ راقب الوضع.",
    do_ghost: "ابحث عن حافلة هذه الخدمة أو أرسل حافلة احتياطية؛ يرى الركاب «لم تُرصد أي حافلة».",
    do_short: "أضف حافلة أو باعد بين الحافلات العاملة.",
    do_silent: "اتصل بالسائق؛ قد يكون الجهاز مطفأ.",
    do_detour: "أكّد التحويلة وأبلغ الركاب في المحطات التي لا تمر بها.",
    al_vehicles: "المركبات:", al_show: "أظهر على الخريطة", al_on_map: "على الخريطة: {what}.",
    al_no_position: "{what}: لا يوجد موقع لإظهاره.", al_clear: "مسح",
    al_left: "غادرت المسار", al_rejoined: "عادت",
  },
});

// --- the alerts ----------------------------------------------------------------------------

const alerts = new Map(); // alert_id → alert (the API's fields)
let reading = null; // changes pushed while a re-read is on its way: applied again after it
let routeFilter = "";
let shownId = null; // the alert on the map
let renderTimer = null;
const stopPlaces = new Map(); // stop_id → {lat, lon, name} (ghost trips' first stops)
export const alertLog = []; // alert ids of the changes applied from the websocket, for tests

function alertTime(a) {
  return a.since_s ?? a.started_s ?? a.last_seen_s ?? a.scheduled_departure_s ?? 0;
}

function compareAlerts(a, b) {
  return (SEVERITY_ORDER[a.severity] ?? 3) - (SEVERITY_ORDER[b.severity] ?? 3)
    || alertTime(b) - alertTime(a) || a.alert_id.localeCompare(b.alert_id);
}

function applyChange(change) {
  if (change.change === "closed") alerts.delete(change.alert.alert_id);
  else alerts.set(change.alert.alert_id, change.alert);
}

// A websocket `alerts` message (operator.js hands it over).
export function onAlertsMessage(message) {
  for (const change of message.changes || []) {
    applyChange(change);
    alertLog.push(`${change.change}:${change.alert.alert_id}`);
    if (reading) reading.push(change);
  }
  scheduleRender();
}

export async function readAlerts() {
  const pushed = [];
  reading = pushed;
  try {
    const answer = await BT.getJson("/api/operations/alerts");
    alerts.clear();
    for (const a of answer.alerts) alerts.set(a.alert_id, a);
    for (const change of pushed) applyChange(change); // newer than the answer, maybe
    setError("alerts", null);
  } catch (error) {
    setError("alerts", apiError(error));
  } finally {
    if (reading === pushed) reading = null;
  }
  renderAlerts();
}

export function startAlerts() {
  $("alerts-route").addEventListener("change", (event) => {
    routeFilter = event.target.value;
    renderAlerts();
  });
  readAlerts();
  setInterval(readAlerts, REREAD_MS);
  startCancellations(readAlerts); // an undone cancellation's ghost is listed again
  setInterval(scheduleRender, 15000); // "since … (3 min)" moves with the clock
}

function scheduleRender() {
  if (renderTimer) return;
  renderTimer = setTimeout(() => {
    renderTimer = null;
    renderAlerts();
  }, RENDER_MS);
}

// --- texts ---------------------------------------------------------------------------------

function minutes(s) { return number(s / 60, Math.abs(s) < 600 ? 1 : 0); }

function agoText(s) {
  const ago = Math.max(0, BT.serverNow() - s);
  return ago < 120 ? BT.t("op_ago_s", { n: number(ago) }) : BT.t("op_ago_min", { n: number(ago / 60) });
}

function vehicleName(id) { return shortId(id); }

function stopName(id) { return stopPlaces.get(id)?.name || id; }

function describe(a) {
  switch (a.kind) {
    case "bunching":
    case "gapping":
      return BT.t("al_pair", {
        follower: vehicleName(a.follower_vehicle_id), leader: vehicleName(a.leader_vehicle_id),
        gap: minutes(a.gap_s), scheduled: minutes(a.scheduled_gap_s),
      });
    case "ghost_trip":
      return BT.t("al_ghost", {
        trip: a.trip_id, stop: stopName(a.first_stop_id), time: BT.timeText(a.scheduled_departure_s),
      });
    case "short_service":
      return BT.t("al_short", {
        seen: number(a.buses_seen), needed: number(a.buses_needed), trip: a.trip_id,
        headway: minutes(a.headway_s),
      });
    case "silent_vehicle":
      return BT.t("al_silent", { vehicle: vehicleName(a.vehicle_id), time: BT.timeText(a.last_seen_s, true), trip: a.trip_id });
    case "detour": {
      const text = BT.t("al_detour", {
        vehicle: vehicleName(a.vehicle_id), time: BT.timeText(a.started_s, true),
        m: number(a.max_offset_m), fixes: number(a.off_fixes),
      });
      return a.ended_s ? `${text} ${BT.t("al_detour_back", { time: BT.timeText(a.ended_s, true) })}` : text;
    }
    default:
      return "";
  }
}

function action(a) {
  switch (a.kind) {
    case "bunching":
    case "gapping":
      return a.hold_s >= 1
        ? BT.t("do_hold", { vehicle: vehicleName(a.hold_vehicle_id), n: number(Math.round(a.hold_s)) })
        : BT.t("do_no_hold");
    case "ghost_trip": return BT.t("do_ghost");
    case "short_service": return BT.t("do_short");
    case "silent_vehicle": return BT.t("do_silent");
    case "detour": return BT.t("do_detour");
    default: return "";
  }
}

function vehiclesOf(a) {
  if (a.kind === "bunching" || a.kind === "gapping") {
    return [...new Set([a.hold_vehicle_id, a.leader_vehicle_id, a.follower_vehicle_id])];
  }
  return a.vehicle_id ? [a.vehicle_id] : [];
}

function titleOf(a) {
  return `${BT.t(`kind_${a.kind}`)} · ${BT.t("al_route", { route: routeName(a.route_id) })}`;
}

// --- the list ------------------------------------------------------------------------------

function alertItem(a) {
  const show = element("button", {
    type: "button", className: "alert-show", "aria-pressed": String(a.alert_id === shownId),
    title: BT.t("al_show"),
  },
  element("span", { className: `sev sev-${a.severity}`, text: BT.t(`sev_${a.severity}`) }),
  element("span", { className: "alert-title", text: titleOf(a) }));
  show.addEventListener("click", () => showOnMap(a.alert_id));
  const since = a.kind === "ghost_trip"
    ? BT.t("al_due", { time: BT.timeText(a.scheduled_departure_s) })
    : BT.t("al_since", { time: BT.timeText(alertTime(a)), ago: agoText(alertTime(a)) });
  const item = element("li", {
    className: `alert sev-${a.severity}`, "data-alert-id": a.alert_id, "data-kind": a.kind,
  },
  element("div", { className: "alert-head" }, show, element("span", { className: "alert-since", text: since })),
  element("p", { className: "alert-what", text: describe(a) }),
  element("p", { className: "alert-do", text: action(a) }));
  if (a.kind === "ghost_trip") { // known not to run: off the list, CANCELED in the feeds
    item.append(element("p", { className: "alert-actions" }, cancelButton(a, () => {
      applyChange({ change: "closed", alert: a });
      renderAlerts();
    })));
  }
  const ids = vehiclesOf(a);
  if (ids.length) {
    const line = element("p", { className: "alert-vehicles" }, element("span", { text: BT.t("al_vehicles") }));
    for (const id of ids) {
      const button = element("button", {
        type: "button", className: "link", text: shortId(id), title: BT.t("op_select", { id }),
        "data-vehicle": id,
      });
      button.addEventListener("click", () => selectVehicle(id));
      line.append(" ", button);
    }
    item.append(line);
  }
  return item;
}

function renderFilter(all) {
  const select = $("alerts-route");
  const counts = new Map();
  for (const a of all) counts.set(a.route_id, (counts.get(a.route_id) || 0) + 1);
  if (routeFilter && !counts.has(routeFilter)) counts.set(routeFilter, 0);
  const routes = [...counts.keys()].sort((x, y) => routeName(x).localeCompare(routeName(y), undefined, { numeric: true }));
  const options = [["", BT.t("op_alerts_all", { n: number(all.length) })],
    ...routes.map((r) => [r, BT.t("op_alerts_route", { route: routeName(r), n: number(counts.get(r)) })])];
  const same = select.options.length === options.length
    && options.every(([value, text], i) => select.options[i].value === value && select.options[i].text === text);
  if (!same) {
    select.replaceChildren(...options.map(([value, text]) => element("option", { value, text })));
    select.value = routeFilter;
  }
}

export function renderAlerts() {
  const all = [...alerts.values()].sort(compareAlerts);
  renderFilter(all);
  const shown = routeFilter ? all.filter((a) => a.route_id === routeFilter) : all;
  setText($("alerts-count"), number(all.length));
  const focused = document.activeElement;
  const focusedId = focused?.closest?.("#alert-list li")?.dataset.alertId;
  const focusedVehicle = focused?.dataset?.vehicle;
  const list = $("alert-list");
  if (!shown.length) {
    list.replaceChildren(element("li", {
      className: "none", text: BT.t(routeFilter ? "op_alerts_none_route" : "op_alerts_none"),
    }));
  } else {
    list.replaceChildren(...shown.map(alertItem));
  }
  if (focusedId) { // redrawn under the keyboard: keep its place
    const item = list.querySelector(`li[data-alert-id="${CSS.escape(focusedId)}"]`);
    const again = focusedVehicle
      ? item?.querySelector(`[data-vehicle="${CSS.escape(focusedVehicle)}"]`)
      : item?.querySelector(".alert-show");
    again?.focus({ preventScroll: true });
  }
  if (shownId && alerts.has(shownId)) {
    if (alerts.get(shownId) !== drawnAlert) drawOnMap(alerts.get(shownId), false);
  } else if (shownId) {
    clearMap();
  }
  for (const a of all) { // the ghost trips' first stops by their names
    if (a.kind === "ghost_trip" && !stopPlaces.has(a.first_stop_id) && !naming.has(a.first_stop_id)) {
      naming.add(a.first_stop_id);
      stopPlace(a.first_stop_id).then(scheduleRender, () => {});
    }
  }
}

// --- on the map ----------------------------------------------------------------------------

let layer = null;
let renderer = null; // SVG (the map draws on a canvas): the detour's path is an element, with its class
let drawnAlert = null; // the value of the alert drawn
const naming = new Set(); // stops whose names are on their way

function marker(lat, lon, className, label) {
  return L.marker([lat, lon], {
    icon: L.divIcon({ className: `alert-marker ${className}`, iconSize: [20, 20] }),
    keyboard: false, title: label, zIndexOffset: 900,
  }).bindTooltip(label, { direction: "top", offset: [0, -10] });
}

function routeLines(routeId) {
  const features = (page.network?.features || []).filter((f) => f.geometry.type === "LineString"
    && (f.properties.route_id === routeId || (f.properties.route_ids || []).includes(routeId)));
  return L.geoJSON({ type: "FeatureCollection", features }, {
    interactive: false, renderer: svgRenderer(), style: { color: "#c0392b", weight: 6, opacity: 0.55 },
  });
}

function svgRenderer() {
  if (!renderer) renderer = L.svg({ padding: 0.5 });
  return renderer;
}

async function stopPlace(stopId) {
  if (!stopPlaces.has(stopId)) {
    const stop = await BT.getJson(`/api/stops/${encodeURIComponent(stopId)}?limit=1`);
    stopPlaces.set(stopId, { lat: stop.lat, lon: stop.lon, name: stop.name });
  }
  return stopPlaces.get(stopId);
}

function clearMap() {
  layer?.remove();
  layer = null;
  shownId = null;
  drawnAlert = null;
  $("map-alert").hidden = true;
}

function caption(a, found) {
  const box = $("map-alert");
  const what = titleOf(a);
  const clear = element("button", { type: "button", className: "link", text: BT.t("al_clear") });
  clear.addEventListener("click", () => {
    clearMap();
    renderAlerts();
  });
  box.replaceChildren(element("span", {
    text: BT.t(found ? "al_on_map" : "al_no_position", { what }),
  }), " ", clear);
  box.hidden = false;
  box.dataset.alertId = a.alert_id;
}

// Draws alert `a` on the map; `fit`: and moves the map to it.
async function drawOnMap(a, fit) {
  if (!page.map) return;
  drawnAlert = a;
  const group = L.featureGroup();
  const label = titleOf(a);
  let bounds = null;
  if (a.kind === "detour") {
    const path = (a.path || []).map(([lat, lon]) => [lat, lon]);
    const points = [[a.left_lat, a.left_lon], ...path];
    if (typeof a.rejoined_lat === "number") points.push([a.rejoined_lat, a.rejoined_lon]);
    L.polyline(points, {
      color: "#7b2cbf", weight: 5, opacity: 0.9, dashArray: "8 6", className: "detour-path", renderer: svgRenderer(),
    }).addTo(group);
    marker(a.left_lat, a.left_lon, "detour-left", `${label}: ${BT.t("al_left")}`).addTo(group);
    if (typeof a.rejoined_lat === "number") {
      marker(a.rejoined_lat, a.rejoined_lon, "detour-rejoined", `${label}: ${BT.t("al_rejoined")}`).addTo(group);
    }
    bounds = L.latLngBounds(points);
  } else if (a.kind === "ghost_trip") {
    try {
      const stop = await stopPlace(a.first_stop_id);
      if (shownId !== a.alert_id) return; // another one was chosen meanwhile
      marker(stop.lat, stop.lon, `sev-${a.severity}`, `${label}: ${stop.name}`).addTo(group);
      bounds = L.latLngBounds([[stop.lat, stop.lon]]);
    } catch (error) {
      setError("alerts", apiError(error));
    }
  } else if (a.kind === "short_service") {
    const lines = routeLines(a.route_id);
    lines.addTo(group);
    if (lines.getLayers().length) bounds = lines.getBounds();
  } else if (typeof a.lat === "number" && typeof a.lon === "number") {
    marker(a.lat, a.lon, `sev-${a.severity}`, label).addTo(group);
    bounds = L.latLngBounds([[a.lat, a.lon]]);
  }
  layer?.remove();
  layer = group.addTo(page.map);
  caption(a, Boolean(bounds));
  if (fit && bounds) {
    const single = bounds.getNorthEast().equals(bounds.getSouthWest());
    if (single) page.map.setView(bounds.getCenter(), Math.max(page.map.getZoom(), 15));
    else page.map.fitBounds(bounds, { padding: [30, 30], maxZoom: 16 });
  }
}

function showOnMap(alertId) {
  const a = alerts.get(alertId);
  if (!a) return;
  shownId = alertId;
  drawOnMap(a, true);
  for (const button of document.querySelectorAll("#alert-list .alert-show")) {
    button.setAttribute("aria-pressed", String(button.closest("li").dataset.alertId === alertId));
  }
  const box = $("map").getBoundingClientRect();
  if (box.bottom < 0 || box.top > window.innerHeight) {
    $("map").scrollIntoView({ behavior: "smooth", block: "center" });
  }
}

// For tests: the alerts as the page holds them.
export function alertsShown() { return [...alerts.values()]; }
