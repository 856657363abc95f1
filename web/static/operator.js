// The operator's dashboard: the live fleet table (sortable, filterable), a small map of the chosen
// bus, per-route on-time shares and delay spreads, the fleet's delay over the last hour, and the
// problems the tracker reports.
// Data: /api/config, /api/routes, /api/network.geojson once; /ws/live for the table and the map;
// /api/fleet and /api/problems every few seconds; /api/history once, to seed the delay chart.
// Plain JavaScript, no build step; needs common.js (the global `BT`) and Leaflet.
"use strict";

(() => {
  const ON_TIME_EARLY_S = -60; // the server's definition (tracker/api/http.py)
  const ON_TIME_LATE_S = 300;
  const POLL_MS = 10000; // /api/fleet and /api/problems
  const RENDER_MS = 1000; // the table and the map are redrawn at most this often
  const RETRY_MS = 5000; // when the first requests fail
  const CHART_WINDOW_S = 3600;
  const SAMPLE_S = 60; // the delay chart gets a point per minute
  const SEED_SLICE_S = 30; // history seeding: the latest ping per vehicle in these 30 s
  const SEED_CONCURRENCY = 6;
  const SPREAD_MIN_S = -300; // the strip plots' axis
  const SPREAD_MAX_S = 900;
  const STATE_ORDER = ["in_service", "layover", "off_route", "stale", "not_matched"];
  const FIRST_DIRECTION = { delay: "descending" }; // the latest buses first; others ascending
  const RECENT_REJECTED = 10;

  BT.addStrings({
    en: {
      op_title: "Operator", op_skip: "Skip to the fleet table", op_pages: "Pages",
      op_fleet: "Fleet", op_filter: "Filter", op_filter_hint: "vehicle, route, trip…",
      op_state: "State", op_all_states: "all states",
      op_fleet_caption: "Vehicles; choose a row to show the bus on the map",
      col_vehicle: "Vehicle", col_route: "Route", col_trip: "Trip", col_delay: "Delay",
      col_state: "State", col_seen: "Last seen", col_buses: "In service / buses", col_on_time: "On time",
      col_spread: "Delay spread", col_median: "Median", col_p90: "p90",
      op_shown: "{shown} of {total} vehicles", op_no_match: "No vehicle matches the filter.",
      op_no_vehicles: "No vehicle is reporting yet.",
      op_totals: "{total} vehicles · {in_service} in service · {layover} layover · "
        + "{off_route} off route · {not_matched} not matched · {stale} stale",
      op_map: "Selected bus", op_map_label: "Map of the routes and the selected bus",
      op_pick: "Choose a vehicle in the table to show it here.",
      op_gone: "Vehicle {id} is no longer reporting.",
      op_routes: "Routes: on time and delays",
      op_on_time_rule: "On time: from 1 min early to 5 min late.",
      op_axis: "(−5 to +15 min)", op_asof: "As of {time}.", op_all_routes: "All routes",
      op_in_service_of: "{in_service} / {vehicles}",
      op_ago_s: "{n} s ago", op_ago_min: "{n} min ago",
      op_share: "{share} ({on_time} of {n})", op_spread_label: "{n} delays from {min} to {max}",
      op_no_delays: "no delays", op_no_routes: "No route has vehicles yet.",
      op_chart_title: "Fleet delay, last hour", op_median: "median",
      op_chart_label: "Fleet delay over the last hour: median {median}, p90 {p90} now",
      op_chart_empty: "No delays in the last hour yet.", min_unit: "min",
      op_problems: "Problems", op_stale: "Stale", op_off_route: "Off route",
      op_not_matched: "Not matched", op_none: "None.", op_rejected: "Rejected messages",
      op_no_rejected: "No message was rejected.", op_by_reason: "By reason",
      op_recent: "Latest", col_reason: "Reason", col_count: "Count", col_time: "Time",
      col_detail: "Detail", op_offset: "{n} m from the route",
      d_vehicle: "Vehicle", d_route: "Route", d_trip: "Trip", d_state: "State",
      d_delay: "Delay", d_seen: "Last seen", d_offset: "Distance from route",
      d_reason: "Reason", op_select: "Show {id} on the map",
      reason_malformed: "malformed", reason_bad_coordinates: "bad coordinates",
      reason_bad_timestamp: "bad timestamp", reason_future_timestamp: "timestamp in the future",
      reason_stale_timestamp: "timestamp too old", reason_duplicate: "duplicate",
      reason_out_of_order: "out of order", reason_unknown_trip: "unknown trip",
      reason_unknown_route: "unknown route", reason_trip_not_running: "trip not running",
      reason_trip_mismatch: "trip mismatch", reason_no_shape_nearby: "no route nearby",
    },
    fr: {
      op_title: "Exploitation", op_skip: "Aller au tableau de la flotte", op_pages: "Pages",
      op_fleet: "Flotte", op_filter: "Filtrer",
      op_filter_hint: "véhicule, ligne, course…", op_state: "État", op_all_states: "tous les états",
      op_fleet_caption: "Véhicules ; choisissez une ligne pour voir le bus sur la carte",
      col_vehicle: "Véhicule", col_route: "Ligne", col_trip: "Course", col_delay: "Retard",
      col_state: "État", col_seen: "Vu", col_buses: "En service / bus", col_on_time: "À l'heure",
      col_spread: "Dispersion des retards", col_median: "Médiane", col_p90: "p90",
      op_shown: "{shown} véhicules sur {total}", op_no_match: "Aucun véhicule ne correspond.",
      op_no_vehicles: "Aucun véhicule n'émet encore.",
      op_totals: "{total} véhicules · {in_service} en service · {layover} au terminus · "
        + "{off_route} hors ligne · {not_matched} non reconnus · {stale} positions anciennes",
      op_map: "Bus choisi", op_map_label: "Carte des lignes et du bus choisi",
      op_pick: "Choisissez un véhicule dans le tableau pour le voir ici.",
      op_gone: "Le véhicule {id} n'émet plus.",
      op_routes: "Lignes : ponctualité et retards",
      op_on_time_rule: "À l'heure : de 1 min d'avance à 5 min de retard.",
      op_axis: "(−5 à +15 min)", op_asof: "À {time}.", op_all_routes: "Toutes les lignes",
      op_in_service_of: "{in_service} / {vehicles}",
      op_ago_s: "il y a {n} s", op_ago_min: "il y a {n} min",
      op_share: "{share} ({on_time} sur {n})", op_spread_label: "{n} retards de {min} à {max}",
      op_no_delays: "aucun retard", op_no_routes: "Aucune ligne n'a encore de véhicule.",
      op_chart_title: "Retard de la flotte, dernière heure", op_median: "médiane",
      op_chart_label: "Retard de la flotte sur la dernière heure : médiane {median}, p90 {p90}",
      op_chart_empty: "Pas encore de retard mesuré dans l'heure.", min_unit: "min",
      op_problems: "Problèmes", op_stale: "Positions anciennes", op_off_route: "Hors ligne",
      op_not_matched: "Non reconnus", op_none: "Aucun.", op_rejected: "Messages rejetés",
      op_no_rejected: "Aucun message rejeté.", op_by_reason: "Par motif",
      op_recent: "Derniers", col_reason: "Motif", col_count: "Nombre", col_time: "Heure",
      col_detail: "Détail", op_offset: "à {n} m de la ligne",
      d_vehicle: "Véhicule", d_route: "Ligne", d_trip: "Course", d_state: "État",
      d_delay: "Retard", d_seen: "Vu", d_offset: "Distance à la ligne",
      d_reason: "Motif", op_select: "Voir {id} sur la carte",
      reason_malformed: "mal formé", reason_bad_coordinates: "coordonnées invalides",
      reason_bad_timestamp: "horodatage invalide", reason_future_timestamp: "horodatage futur",
      reason_stale_timestamp: "horodatage trop ancien", reason_duplicate: "doublon",
      reason_out_of_order: "dans le désordre", reason_unknown_trip: "course inconnue",
      reason_unknown_route: "ligne inconnue", reason_trip_not_running: "course hors service",
      reason_trip_mismatch: "course incohérente", reason_no_shape_nearby: "aucune ligne proche",
    },
    ar: {
      op_title: "التشغيل", op_skip: "انتقل إلى جدول الأسطول", op_pages: "الصفحات",
      op_fleet: "الأسطول", op_filter: "تصفية",
      op_filter_hint: "مركبة، خط، رحلة…", op_state: "الحالة", op_all_states: "كل الحالات",
      op_fleet_caption: "المركبات؛ اختر صفًا لإظهار الحافلة على الخريطة",
      col_vehicle: "المركبة", col_route: "الخط", col_trip: "الرحلة", col_delay: "التأخير",
      col_state: "الحالة", col_seen: "آخر ظهور", col_buses: "في الخدمة / الحافلات", col_on_time: "في الموعد",
      col_spread: "توزيع التأخير", col_median: "الوسيط", col_p90: "p90",
      op_shown: "{shown} من {total} مركبة", op_no_match: "لا توجد مركبة مطابقة للتصفية.",
      op_no_vehicles: "لا توجد مركبة ترسل بعد.",
      op_totals: "{total} مركبة · {in_service} في الخدمة · {layover} في المحطة النهائية · "
        + "{off_route} خارج المسار · {not_matched} غير مطابقة · {stale} موقع قديم",
      op_map: "الحافلة المختارة", op_map_label: "خريطة الخطوط والحافلة المختارة",
      op_pick: "اختر مركبة من الجدول لإظهارها هنا.",
      op_gone: "المركبة {id} لم تعد ترسل.",
      op_routes: "الخطوط: الالتزام بالموعد والتأخير",
      op_on_time_rule: "في الموعد: من دقيقة مبكرًا إلى 5 دقائق تأخيرًا.",
      op_axis: "(−5 إلى +15 دقيقة)", op_asof: "حتى {time}.", op_all_routes: "كل الخطوط",
      op_in_service_of: "{in_service} / {vehicles}",
      op_ago_s: "قبل {n} ث", op_ago_min: "قبل {n} د",
      op_share: "{share} ({on_time} من {n})", op_spread_label: "{n} تأخير من {min} إلى {max}",
      op_no_delays: "لا تأخير", op_no_routes: "لا توجد مركبات على أي خط بعد.",
      op_chart_title: "تأخير الأسطول، آخر ساعة", op_median: "الوسيط",
      op_chart_label: "تأخير الأسطول في آخر ساعة: الوسيط {median}، p90 {p90}",
      op_chart_empty: "لا يوجد تأخير مقيس في آخر ساعة بعد.", min_unit: "دقيقة",
      op_problems: "المشكلات", op_stale: "موقع قديم", op_off_route: "خارج المسار",
      op_not_matched: "غير مطابقة", op_none: "لا شيء.", op_rejected: "الرسائل المرفوضة",
      op_no_rejected: "لم تُرفض أي رسالة.", op_by_reason: "حسب السبب",
      op_recent: "الأحدث", col_reason: "السبب", col_count: "العدد", col_time: "الوقت",
      col_detail: "التفاصيل", op_offset: "على بعد {n} م من الخط",
      d_vehicle: "المركبة", d_route: "الخط", d_trip: "الرحلة", d_state: "الحالة",
      d_delay: "التأخير", d_seen: "آخر ظهور", d_offset: "البعد عن الخط",
      d_reason: "السبب", op_select: "أظهر {id} على الخريطة",
      reason_malformed: "رسالة معيبة", reason_bad_coordinates: "إحداثيات غير صالحة",
      reason_bad_timestamp: "وقت غير صالح", reason_future_timestamp: "وقت في المستقبل",
      reason_stale_timestamp: "وقت قديم جدًا", reason_duplicate: "مكررة",
      reason_out_of_order: "خارج الترتيب", reason_unknown_trip: "رحلة غير معروفة",
      reason_unknown_route: "خط غير معروف", reason_trip_not_running: "رحلة لا تعمل الآن",
      reason_trip_mismatch: "رحلة غير متطابقة", reason_no_shape_nearby: "لا خط قريب",
    },
  });

  const $ = (id) => document.getElementById(id);

  const page = {
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
  };

  // --- small helpers ---------------------------------------------------------------------------

  function percentile(ordered, q) {
    // numpy's default (linear between ranks), like the server's _percentile
    if (!ordered.length) return null;
    const rank = q * (ordered.length - 1);
    const low = Math.floor(rank);
    const high = Math.min(low + 1, ordered.length - 1);
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low);
  }

  function number(value, digits = 0) {
    return new Intl.NumberFormat(BT.language, { maximumFractionDigits: digits }).format(value);
  }

  function minutesText(delayS) {
    if (typeof delayS !== "number") return "–";
    const format = new Intl.NumberFormat(BT.language, {
      maximumFractionDigits: 1, signDisplay: "exceptZero",
    });
    return `${ltr(format.format(delayS / 60))} ${BT.t("min_unit")}`;
  }

  // A signed number kept whole in right-to-left text (else "-0.9" shows as "0.9-").
  function ltr(text) { return `\u2066${text}\u2069`; }

  function shareText(share) {
    if (typeof share !== "number") return "–";
    return new Intl.NumberFormat(BT.language, { style: "percent" }).format(share);
  }

  function agoText(ageS) {
    const s = Math.max(0, Math.round(ageS));
    return s < 120 ? BT.t("op_ago_s", { n: number(s) }) : BT.t("op_ago_min", { n: number(s / 60) });
  }

  function ageOf(v) { return BT.serverNow() - v.observed_at_s; }
  function isStale(v) { return ageOf(v) > page.staleAfterS; }
  function shownState(v) { return isStale(v) ? "stale" : v.state; }
  function routeName(routeId) {
    if (!routeId) return "";
    const route = page.routes.get(routeId);
    return route ? route.short_name : routeId;
  }
  function delayClass(delayS) {
    if (typeof delayS !== "number") return "";
    if (delayS > ON_TIME_LATE_S) return "late";
    if (delayS < ON_TIME_EARLY_S) return "early";
    return "on-time";
  }

  // Long ids (feeds' trip ids make long vehicle ids) keep their start and their distinctive end.
  function shortId(id) {
    return id.length <= 20 ? id : `${id.slice(0, 4)}…${id.slice(-12)}`;
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function element(tag, attributes = {}, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "className") el.className = value;
      else if (name === "text") el.textContent = value;
      else el.setAttribute(name, value);
    }
    el.append(...children);
    return el;
  }

  function setError(where, message) {
    if (message) page.errors.set(where, message);
    else page.errors.delete(where);
    BT.showError([...page.errors.values()].join(" "));
  }

  function apiError(error) { return BT.t("error_api", { detail: error.message }); }

  // The delays counted for punctuality: in service, not stale, with a delay (as the server).
  function countedDelays(vehicles) {
    return vehicles
      .filter((v) => v.state === "in_service" && !v.stale && typeof v.delay_s === "number")
      .map((v) => v.delay_s)
      .sort((a, b) => a - b);
  }

  // --- the fleet table -------------------------------------------------------------------------

  const rowEls = new Map(); // vehicle_id → <tr>
  const collator = new Intl.Collator(undefined, { numeric: true });

  const SORT_VALUES = {
    vehicle: (v) => v.vehicle_id,
    route: (v) => routeName(v.route_id),
    trip: (v) => page.headsigns.get(v.trip_id) || v.trip_id || "",
    delay: (v) => (typeof v.delay_s === "number" ? v.delay_s : null),
    state: (v) => STATE_ORDER.indexOf(shownState(v)),
    seen: (v) => ageOf(v),
  };

  function compareVehicles(a, b) {
    const value = SORT_VALUES[page.sort.key];
    const x = value(a);
    const y = value(b);
    const sign = page.sort.direction === "ascending" ? 1 : -1;
    let order = 0;
    if (x === null || y === null) order = (x === null) - (y === null); // missing last, always
    else order = sign * (typeof x === "string" ? collator.compare(x, y) : x - y);
    return order || collator.compare(a.vehicle_id, b.vehicle_id);
  }

  function matchesFilter(v) {
    if (page.filterState && shownState(v) !== page.filterState) return false;
    if (!page.filterText) return true;
    const haystack = [
      v.vehicle_id, routeName(v.route_id), v.route_id, v.trip_id, page.headsigns.get(v.trip_id),
    ].join(" ").toLowerCase();
    return page.filterText.split(/\s+/).every((word) => haystack.includes(word));
  }

  function newRow(id) {
    const select = element("button", { type: "button", className: "select-bus" });
    select.addEventListener("click", (event) => {
      event.stopPropagation();
      selectVehicle(id);
    });
    const tr = element("tr", { "data-id": id },
      element("th", { scope: "row", className: "c-vehicle" }, select),
      element("td", { className: "c-route" }),
      element("td", { className: "c-trip" }),
      element("td", { className: "c-delay" }),
      element("td", { className: "c-state" }, element("span", { className: "badge" })),
      element("td", { className: "c-seen" }));
    tr.addEventListener("click", () => selectVehicle(id));
    return tr;
  }

  function fillRow(tr, v) {
    const [vehicleCell, routeCell, tripCell, delayCell, stateCell, seenCell] = tr.children;
    const button = vehicleCell.firstChild;
    setText(button, shortId(v.vehicle_id));
    button.title = v.vehicle_id;
    button.setAttribute("aria-pressed", String(v.vehicle_id === page.selectedId));
    button.setAttribute("aria-label", BT.t("op_select", { id: v.vehicle_id }));
    tr.classList.toggle("selected", v.vehicle_id === page.selectedId);
    setText(routeCell, routeName(v.route_id));
    tripCell.dir = "auto"; // headsigns and trip ids are in the feed's language
    const headsign = page.headsigns.get(v.trip_id);
    const tripText = headsign ? `${headsign} · ${v.trip_id}` : v.trip_id || "";
    if (tripCell.title !== tripText) {
      tripCell.title = tripText;
      tripCell.replaceChildren(headsign || "", element("span", {
        className: "trip-id", text: headsign ? ` ${v.trip_id}` : v.trip_id || "",
      }));
    }
    setText(delayCell, typeof v.delay_s === "number" ? minutesText(v.delay_s) : "");
    delayCell.className = `c-delay ${delayClass(v.delay_s)}`;
    const state = shownState(v);
    const badge = stateCell.firstChild;
    setText(badge, BT.stateText(state));
    badge.className = `badge state-${state}`;
    setText(seenCell, agoText(ageOf(v)));
    seenCell.title = BT.timeText(v.observed_at_s, true);
  }

  // Puts the rows in `wanted` order, moving only those out of place (keeps scroll and focus).
  function placeRows(body, wanted) {
    const focused = document.activeElement;
    let cursor = body.firstElementChild;
    for (const tr of wanted) {
      if (tr === cursor) cursor = cursor.nextElementSibling;
      else body.insertBefore(tr, cursor);
    }
    while (cursor) {
      const next = cursor.nextElementSibling;
      cursor.remove();
      cursor = next;
    }
    if (focused && focused !== document.activeElement && body.contains(focused)) {
      focused.focus({ preventScroll: true });
    }
  }

  function renderTable() {
    const all = [...page.vehicles.values()];
    const shown = all.filter(matchesFilter).sort(compareVehicles);
    const wanted = shown.map((v) => {
      let tr = rowEls.get(v.vehicle_id);
      if (!tr) {
        tr = newRow(v.vehicle_id);
        rowEls.set(v.vehicle_id, tr);
      }
      fillRow(tr, v);
      return tr;
    });
    for (const id of rowEls.keys()) if (!page.vehicles.has(id)) rowEls.delete(id);
    placeRows($("fleet-body"), wanted);
    setText($("shown-count"), BT.t("op_shown", { shown: shown.length, total: all.length }));
    const empty = $("fleet-empty");
    empty.hidden = shown.length > 0;
    setText(empty, BT.t(all.length ? "op_no_match" : "op_no_vehicles"));
    renderTotals(all);
  }

  function renderTotals(all) {
    const counts = Object.fromEntries(STATE_ORDER.map((s) => [s, 0]));
    for (const v of all) {
      if (v.state in counts) counts[v.state] += 1;
      if (isStale(v)) counts.stale += 1;
    }
    setText($("totals"), BT.t("op_totals", { total: all.length, ...counts }));
  }

  function renderSortHeaders() {
    for (const th of document.querySelectorAll("#fleet-table th[data-sort]")) {
      if (th.dataset.sort === page.sort.key) th.setAttribute("aria-sort", page.sort.direction);
      else th.removeAttribute("aria-sort");
    }
  }

  function sortBy(key) {
    if (page.sort.key === key) {
      page.sort.direction = page.sort.direction === "ascending" ? "descending" : "ascending";
    } else {
      page.sort = { key, direction: FIRST_DIRECTION[key] || "ascending" };
    }
    renderSortHeaders();
    renderTable();
  }

  function setUpTableControls() {
    for (const th of document.querySelectorAll("#fleet-table th[data-sort]")) {
      th.querySelector("button").addEventListener("click", () => sortBy(th.dataset.sort));
    }
    $("filter-text").addEventListener("input", (event) => {
      page.filterText = event.target.value.trim().toLowerCase();
      renderTable();
    });
    $("filter-state").addEventListener("change", (event) => {
      page.filterState = event.target.value;
      renderTable();
    });
    renderSortHeaders();
  }

  // --- the map ---------------------------------------------------------------------------------

  const map = {
    leaflet: null,
    network: null, // the GeoJSON of every shape
    buses: null, // layer of small dots, one per bus
    dots: new Map(), // vehicle_id → circle marker
    routeLayer: null, // the selected bus's route, drawn thick
    marker: null, // the selected bus
  };

  function createMap(config) {
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
  }

  function drawNetwork(network) {
    map.network = network;
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

  function renderMapBuses() {
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

  function renderSelectedOnMap(recentre) {
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

  // --- the chosen vehicle ----------------------------------------------------------------------

  function selectVehicle(id) {
    page.selectedId = id;
    renderTable();
    renderSelectedOnMap(true);
    renderSelected();
    if (window.matchMedia("(max-width: 900px)").matches) {
      $("map").scrollIntoView({ behavior: "smooth", block: "center" });
    }
  }

  function renderSelected() {
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

  // --- routes: on-time shares and delay spreads (from /api/fleet) ---------------------------------

  function spreadSvg(delays) {
    const width = 160;
    const height = 26;
    const x = (s) => ((Math.min(Math.max(s, SPREAD_MIN_S), SPREAD_MAX_S) - SPREAD_MIN_S)
      / (SPREAD_MAX_S - SPREAD_MIN_S)) * width;
    const ticks = [-300, 300, 600, 900].map((t) =>
      `<line class="tick" x1="${x(t)}" x2="${x(t)}" y1="0" y2="${height}"/>`);
    const parts = [
      `<rect class="frame" x="0.5" y="0.5" width="${width - 1}" height="${height - 1}"/>`,
      ...ticks,
      `<rect class="band" x="${x(ON_TIME_EARLY_S)}" y="0" width="${x(ON_TIME_LATE_S) - x(ON_TIME_EARLY_S)}" height="${height}"/>`,
      `<line class="zero" x1="${x(0)}" x2="${x(0)}" y1="0" y2="${height}"/>`,
    ];
    if (delays.length >= 3) {
      const q1 = x(percentile(delays, 0.25));
      const q3 = x(percentile(delays, 0.75));
      const median = x(percentile(delays, 0.5));
      parts.push(`<rect class="box" x="${q1}" y="5" width="${Math.max(q3 - q1, 1)}" height="${height - 10}"/>`);
      parts.push(`<line class="median" x1="${median}" x2="${median}" y1="3" y2="${height - 3}"/>`);
    }
    delays.forEach((d, i) => {
      const y = 6 + ((i * 5) % (height - 12)); // a fixed jitter so equal delays stay visible
      parts.push(`<circle class="dot ${delayClass(d)}" cx="${x(d).toFixed(1)}" cy="${y}" r="2.2"/>`);
    });
    const label = delays.length
      ? BT.t("op_spread_label", {
        n: delays.length, min: minutesText(delays[0]), max: minutesText(delays[delays.length - 1]),
      })
      : BT.t("op_no_delays");
    return `<svg class="spread" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}"`
      + ` role="img" aria-label="${BT.escapeHtml(label)}" direction="ltr">${parts.join("")}</svg>`;
  }

  function shareCell(punctuality) {
    const td = element("td", { className: "c-share" });
    if (typeof punctuality.on_time_share !== "number") {
      td.textContent = "–";
      return td;
    }
    const bar = element("span", { className: "share-bar", "aria-hidden": "true" },
      element("span", { style: `width:${Math.round(punctuality.on_time_share * 100)}%` }));
    const text = BT.t("op_share", {
      share: shareText(punctuality.on_time_share),
      on_time: number(punctuality.on_time),
      n: number(punctuality.with_delay),
    });
    td.append(bar, element("span", { className: "share-text", text }));
    return td;
  }

  function routeRow(name, color, counts, punctuality, delays, isTotal) {
    const swatch = element("span", { className: "swatch", style: `background:${color || "#5a6b7d"}` });
    const nameCell = element("th", { scope: "row" }, swatch, element("span", { text: name }));
    const spread = element("td", { className: "c-spread" });
    spread.innerHTML = spreadSvg(delays);
    const tr = element("tr", { className: isTotal ? "total" : "" },
      nameCell,
      element("td", { className: "num", text: BT.t("op_in_service_of", counts) }),
      shareCell(punctuality),
      spread,
      element("td", { className: "num", text: minutesText(punctuality.median_delay_s) }),
      element("td", { className: "num", text: minutesText(punctuality.p90_delay_s) }));
    return tr;
  }

  function renderRoutes() {
    const body = $("routes-body");
    const fleet = page.fleet;
    if (!fleet) return;
    setText($("routes-asof"), BT.t("op_asof", { time: BT.timeText(fleet.now_s, true) }));
    if (!fleet.routes.length) {
      body.replaceChildren(element("tr", {},
        element("td", { colspan: "6", className: "empty", text: BT.t("op_no_routes") })));
      return;
    }
    const rows = [routeRow(BT.t("op_all_routes"), "#12355b", {
      in_service: number(fleet.totals.by_state.in_service || 0),
      vehicles: number(fleet.totals.vehicles),
    }, fleet.totals.punctuality, countedDelays(fleet.vehicles), true)];
    const routes = [...fleet.routes].sort((a, b) => collator.compare(a.route_short_name, b.route_short_name));
    for (const r of routes) {
      const route = page.routes.get(r.route_id);
      rows.push(routeRow(r.route_short_name, route && route.color, {
        in_service: number(r.in_service), vehicles: number(r.vehicles),
      }, r.punctuality, countedDelays(fleet.vehicles.filter((v) => v.route_id === r.route_id)), false));
    }
    body.replaceChildren(...rows);
  }

  async function pollFleet() {
    try {
      const fleet = await BT.getJson("/api/fleet");
      page.fleet = fleet;
      page.staleAfterS = fleet.stale_after_s;
      for (const v of fleet.vehicles) if (v.trip_id && v.headsign) page.headsigns.set(v.trip_id, v.headsign);
      setError("fleet", null);
      renderRoutes();
    } catch (error) {
      setError("fleet", apiError(error));
    }
  }

  // --- the delay chart -------------------------------------------------------------------------

  function sampleOf(t, delays) {
    const ordered = [...delays].sort((a, b) => a - b);
    return { t, median: percentile(ordered, 0.5), p90: percentile(ordered, 0.9), n: ordered.length };
  }

  function addSample(sample) {
    if (sample.n) page.samples.push(sample);
    page.samples.sort((a, b) => a.t - b.t);
    const since = BT.serverNow() - CHART_WINDOW_S;
    page.samples = page.samples.filter((s) => s.t >= since);
    drawChart();
  }

  function sampleLive() {
    page.sampledLive = true;
    const vehicles = [...page.vehicles.values()].map((v) => ({ ...v, stale: isStale(v) }));
    addSample(sampleOf(BT.serverNow(), countedDelays(vehicles)));
  }

  // The minute before `endS` from the stored history: the latest ping per vehicle in a short slice.
  async function historySample(endS) {
    const url = `/api/history?start_s=${endS - SEED_SLICE_S}&end_s=${endS}&limit=20000`;
    const answer = await BT.getJson(url);
    const latest = new Map();
    for (const p of answer.positions) latest.set(p.vehicle_id, p); // oldest first: newest wins
    const delays = [...latest.values()]
      .filter((p) => p.state === "in_service" && typeof p.delay_s === "number")
      .map((p) => p.delay_s);
    return sampleOf(endS, delays);
  }

  async function seedChart() {
    const now = BT.serverNow();
    const lastMinute = Math.floor(now / SAMPLE_S) * SAMPLE_S;
    const ends = [];
    for (let t = lastMinute; t > now - CHART_WINDOW_S; t -= SAMPLE_S) ends.push(t);
    const seeded = [];
    try {
      for (let i = 0; i < ends.length; i += SEED_CONCURRENCY) {
        const batch = ends.slice(i, i + SEED_CONCURRENCY);
        seeded.push(...await Promise.all(batch.map(historySample)));
      }
      setError("history", null);
    } catch (error) {
      setError("history", apiError(error));
    }
    for (const sample of seeded) if (sample.n) page.samples.push(sample);
    page.samples.sort((a, b) => a.t - b.t);
    drawChart();
  }

  function chartScale(samples) {
    let low = -2;
    let high = 10;
    for (const s of samples) {
      low = Math.min(low, s.median / 60);
      high = Math.max(high, s.p90 / 60);
    }
    return { low: Math.floor(low / 5) * 5, high: Math.ceil(high / 5) * 5 };
  }

  function drawChart() {
    const canvas = $("delay-chart");
    const width = canvas.clientWidth || 600;
    const height = canvas.clientHeight || 180;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.direction = "ltr";
    ctx.font = "11px system-ui, sans-serif";
    const samples = page.samples;
    const now = BT.serverNow();
    const pad = { left: 44, right: 10, top: 10, bottom: 22 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const { low, high } = chartScale(samples);
    const x = (t) => pad.left + ((t - (now - CHART_WINDOW_S)) / CHART_WINDOW_S) * plotW;
    const y = (minutes) => pad.top + (1 - (minutes - low) / (high - low)) * plotH;

    ctx.fillStyle = "rgba(29, 107, 52, 0.12)"; // the on-time band
    ctx.fillRect(pad.left, y(ON_TIME_LATE_S / 60), plotW, y(ON_TIME_EARLY_S / 60) - y(ON_TIME_LATE_S / 60));
    ctx.strokeStyle = "#d5d9de";
    ctx.fillStyle = "#4a5560";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let m = low; m <= high; m += 5) {
      ctx.beginPath();
      ctx.moveTo(pad.left, y(m));
      ctx.lineTo(pad.left + plotW, y(m));
      ctx.stroke();
      ctx.fillText(`${number(m)} ${BT.t("min_unit")}`, pad.left - 4, y(m));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let k = 0; k <= 4; k++) {
      const t = now - CHART_WINDOW_S + (k * CHART_WINDOW_S) / 4;
      ctx.fillText(BT.timeText(t), Math.min(Math.max(x(t), pad.left + 14), width - 18), pad.top + plotH + 6);
    }
    if (!samples.length) {
      ctx.fillText(BT.t("op_chart_empty"), pad.left + plotW / 2, pad.top + plotH / 2 - 6);
      canvas.setAttribute("aria-label", BT.t("op_chart_empty"));
      return;
    }
    drawLine(ctx, samples, (s) => s.p90, x, y, "#d35400");
    drawLine(ctx, samples, (s) => s.median, x, y, "#12355b");
    const last = samples[samples.length - 1];
    canvas.setAttribute("aria-label", BT.t("op_chart_label", {
      median: minutesText(last.median), p90: minutesText(last.p90),
    }));
  }

  function drawLine(ctx, samples, value, x, y, color) {
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let previous = null;
    for (const s of samples) {
      const px = x(s.t);
      const py = y(value(s) / 60);
      if (previous && s.t - previous.t <= 3 * SAMPLE_S) ctx.lineTo(px, py);
      else ctx.moveTo(px, py);
      previous = s;
    }
    ctx.stroke();
    for (const s of samples) { // dots, so a lone sample shows
      ctx.beginPath();
      ctx.arc(x(s.t), y(value(s) / 60), 2, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  // --- problems (from /api/problems) -------------------------------------------------------------

  function reasonText(reason) {
    const key = `reason_${reason}`;
    const text = BT.t(key);
    return text === key ? reason : text;
  }

  function problemGroup(titleKey, items) {
    const list = element("ul", { className: "problem-list" });
    for (const p of items) {
      const parts = [routeName(p.route_id), BT.ageText(p.age_s)];
      if (typeof p.offset_m === "number") parts.push(BT.t("op_offset", { n: number(p.offset_m) }));
      if (p.reason) parts.push(reasonText(p.reason));
      const button = element("button", {
        type: "button", className: "link", text: shortId(p.vehicle_id), title: p.vehicle_id,
      });
      button.addEventListener("click", () => selectVehicle(p.vehicle_id));
      list.append(element("li", { "data-id": p.vehicle_id }, button,
        element("span", { className: "meta", text: parts.filter(Boolean).join(" · ") })));
    }
    if (!items.length) list.append(element("li", { className: "none", text: BT.t("op_none") }));
    const heading = element("h3", {},
      element("span", { text: BT.t(titleKey) }),
      element("span", { className: "count", text: number(items.length) }));
    return element("section", { className: `problem-group ${titleKey}` }, heading, list);
  }

  function rejectedBlock(problems) {
    const reasons = Object.entries(problems.rejected_by_reason).sort((a, b) => b[1] - a[1]);
    if (!reasons.length) return [element("p", { className: "none", text: BT.t("op_no_rejected") })];
    const byReason = element("table", { className: "small-table by-reason" },
      element("caption", { text: BT.t("op_by_reason") }),
      element("thead", {}, element("tr", {},
        element("th", { scope: "col", text: BT.t("col_reason") }),
        element("th", { scope: "col", text: BT.t("col_count") }))),
      element("tbody", {}, ...reasons.map(([reason, count]) => element("tr", { "data-reason": reason },
        element("td", { text: reasonText(reason) }),
        element("td", { className: "num", text: number(count) })))));
    const recent = element("table", { className: "small-table recent" },
      element("caption", { text: BT.t("op_recent") }),
      element("thead", {}, element("tr", {},
        ...["col_time", "col_vehicle", "col_reason", "col_detail"].map((key) =>
          element("th", { scope: "col", text: BT.t(key) })))),
      element("tbody", {}, ...problems.rejected.slice(0, RECENT_REJECTED).map((r) => element("tr", {},
        element("td", { text: BT.timeText(r.received_at_s, true) }),
        element("td", { text: r.vehicle_id ? shortId(r.vehicle_id) : "–", title: r.vehicle_id || "" }),
        element("td", { text: reasonText(r.reason) }),
        element("td", { className: "detail", text: r.detail })))));
    return [byReason, recent];
  }

  function renderProblems() {
    const problems = page.problems;
    if (!problems) return;
    const focusedId = document.activeElement?.closest?.("#problem-lists li")?.dataset.id;
    $("problem-lists").replaceChildren(
      problemGroup("op_stale", problems.stale),
      problemGroup("op_off_route", problems.off_route),
      problemGroup("op_not_matched", problems.not_matched));
    $("rejected").replaceChildren(...rejectedBlock(problems));
    if (focusedId) { // the list was redrawn under the keyboard: keep its place
      document.querySelector(`#problem-lists li[data-id="${CSS.escape(focusedId)}"] button`)?.focus();
    }
  }

  async function pollProblems() {
    try {
      page.problems = await BT.getJson("/api/problems");
      setError("problems", null);
      renderProblems();
    } catch (error) {
      setError("problems", apiError(error));
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
    pollFleet();
    pollProblems();
    setInterval(pollFleet, POLL_MS);
    setInterval(pollProblems, POLL_MS);
    setInterval(scheduleRender, RENDER_MS); // ages and staleness move with the clock
    seedChart().then(() => setInterval(sampleLive, SAMPLE_S * 1000));
    new ResizeObserver(() => drawChart()).observe($("delay-chart"));
  }

  function onLanguage() {
    renderStatus();
    renderTable();
    renderSelected();
    renderRoutes();
    renderProblems();
    drawChart();
  }

  document.addEventListener("DOMContentLoaded", () => {
    BT.languageSwitch($("language"));
    document.addEventListener("bt:language", onLanguage);
    setUpTableControls();
    onStatus("connecting");
    drawChart();
    start();
  });
})();
