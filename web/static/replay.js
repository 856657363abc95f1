// Replay: choose a window of the stored history, load it, and play it back on the map at 1× to
// 60×, with a timeline that can be dragged. Buses are drawn where they were at the play time,
// interpolated between their stored positions.
// Data: /api/config, /api/routes, /api/network.geojson, /api/history/bounds, /api/history.
// Plain JavaScript, no build step; needs common.js (the global `BT`) and Leaflet.
"use strict";

(() => {
  const DEFAULT_WINDOW_S = 3600; // the last hour of stored data
  const HISTORY_LIMIT = 100000; // positions per load; the server says when a window held more
  const MAX_GAP_S = 300; // two positions further apart are not interpolated between
  const HOLD_S = 90; // a bus stays on the map this long after its last position (stale_after_s)
  const FRAME_MS = 33; // redraw the buses at most ~30 times a second
  const ON_TIME_EARLY_S = -60;
  const ON_TIME_LATE_S = 300;

  BT.addStrings({
    en: {
      rp_title: "Replay", rp_pages: "Pages", rp_window: "Time window", rp_from: "From",
      rp_to: "To", rp_load: "Load", rp_last_hour: "Last hour",
      rp_zone: "Times in the agency's time zone:",
      rp_bounds: "Stored history: {first} to {last}.",
      rp_no_history: "No history is stored yet: positions are stored as buses report. Try again later.",
      rp_loading: "Loading…",
      rp_loaded: "{count} positions of {vehicles} buses loaded.",
      rp_truncated: "The window holds more than {limit} positions: only those up to {time} are loaded. Choose a shorter window to see the rest.",
      rp_empty: "No positions are stored in this window. Choose another one within the stored history.",
      rp_bad_window: "The start of the window must be before its end.",
      rp_bad_input: "Give a date and time in both fields.",
      rp_map_label: "Map of the routes and the buses at the replayed time",
      rp_player: "Playback", rp_play: "Play", rp_pause: "Pause", rp_speed: "Speed",
      rp_timeline: "Time", rp_buses: "Buses on the map: {n}",
    },
    fr: {
      rp_title: "Rejouer", rp_pages: "Pages",
      rp_window: "Période", rp_from: "Du", rp_to: "Au", rp_load: "Charger",
      rp_last_hour: "Dernière heure", rp_zone: "Heures du fuseau du réseau :",
      rp_bounds: "Historique enregistré : du {first} au {last}.",
      rp_no_history: "Aucun historique enregistré pour l'instant : les positions sont enregistrées à mesure que les bus émettent. Réessayez plus tard.",
      rp_loading: "Chargement…",
      rp_loaded: "{count} positions de {vehicles} bus chargées.",
      rp_truncated: "La période contient plus de {limit} positions : seules celles jusqu'à {time} sont chargées. Choisissez une période plus courte pour voir la suite.",
      rp_empty: "Aucune position enregistrée dans cette période. Choisissez-en une autre dans l'historique.",
      rp_bad_window: "Le début de la période doit précéder sa fin.",
      rp_bad_input: "Indiquez une date et une heure dans les deux champs.",
      rp_map_label: "Carte des lignes et des bus à l'heure rejouée",
      rp_player: "Lecture", rp_play: "Lire", rp_pause: "Pause", rp_speed: "Vitesse",
      rp_timeline: "Heure", rp_buses: "Bus sur la carte : {n}",
    },
    ar: {
      rp_title: "إعادة العرض", rp_pages: "الصفحات",
      rp_window: "الفترة الزمنية", rp_from: "من", rp_to: "إلى", rp_load: "تحميل",
      rp_last_hour: "آخر ساعة", rp_zone: "الأوقات بالمنطقة الزمنية للشبكة:",
      rp_bounds: "السجل المخزن: من {first} إلى {last}.",
      rp_no_history: "لا يوجد سجل مخزن بعد: تُخزن المواقع كلما أرسلت الحافلات. أعد المحاولة لاحقًا.",
      rp_loading: "جارٍ التحميل…",
      rp_loaded: "حُمّل {count} موقعًا لـ {vehicles} حافلة.",
      rp_truncated: "تحتوي الفترة على أكثر من {limit} موقع: حُمّل ما يصل إلى {time} فقط. اختر فترة أقصر لرؤية الباقي.",
      rp_empty: "لا توجد مواقع مخزنة في هذه الفترة. اختر فترة أخرى ضمن السجل المخزن.",
      rp_bad_window: "يجب أن تكون بداية الفترة قبل نهايتها.",
      rp_bad_input: "أدخل تاريخًا ووقتًا في الحقلين.",
      rp_map_label: "خريطة الخطوط والحافلات في الوقت المعاد عرضه",
      rp_player: "التشغيل", rp_play: "تشغيل", rp_pause: "إيقاف مؤقت", rp_speed: "السرعة",
      rp_timeline: "الوقت", rp_buses: "الحافلات على الخريطة: {n}",
    },
  });

  const $ = (id) => document.getElementById(id);

  const replay = {
    bounds: null, // {first_s, last_s} of the stored history
    startS: 0, // the loaded window (its end is where the loaded data ends when truncated)
    endS: 0,
    tracks: new Map(), // vehicle_id → {times, lats, lons, rows}
    playS: 0,
    playing: false,
    speed: 10,
    lastFrameMs: null,
    lastDrawMs: 0,
    dragging: false,
    loadedNote: null, // {key, params} of the last load's message, re-said on a language change
  };
  const map = { leaflet: null, buses: new Map(), routes: new Map() };

  // --- the agency's time zone ------------------------------------------------------------------

  function zoneParts(epochS) {
    const format = new Intl.DateTimeFormat("en-CA", {
      timeZone: BT.config.timezone, hourCycle: "h23", year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
    const parts = {};
    for (const p of format.formatToParts(new Date(epochS * 1000))) parts[p.type] = p.value;
    return parts;
  }

  // "YYYY-MM-DDTHH:MM", the wall time in the agency's zone, as <input type=datetime-local> wants.
  function toInputValue(epochS) {
    const p = zoneParts(epochS);
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
  }

  function zoneOffsetS(epochS) {
    const p = zoneParts(epochS);
    const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) / 1000;
    return asUtc - Math.floor(epochS);
  }

  // The epoch seconds of a wall time in the agency's zone (null when not a date and time).
  function fromInputValue(text) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(text);
    if (!m) return null;
    const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)) / 1000;
    let epoch = wall - zoneOffsetS(wall);
    const corrected = wall - zoneOffsetS(epoch); // a daylight-saving change between the two
    if (corrected !== epoch) epoch = corrected;
    return epoch;
  }

  function dateTimeText(epochS) {
    return new Intl.DateTimeFormat(BT.language, {
      timeZone: BT.config.timezone, dateStyle: "medium", timeStyle: "medium", hourCycle: "h23",
    }).format(new Date(epochS * 1000));
  }

  // --- loading ---------------------------------------------------------------------------------

  function note(key, params = {}) {
    replay.loadedNote = key ? { key, params } : null;
    $("loaded").textContent = key ? BT.t(key, params) : "";
  }

  async function loadBounds() {
    replay.bounds = await BT.getJson("/api/history/bounds");
    renderBounds();
    return replay.bounds.first_s !== null;
  }

  function renderBounds() {
    const b = replay.bounds;
    if (!b) return;
    const empty = b.first_s === null;
    $("bounds").textContent = empty ? BT.t("rp_no_history")
      : BT.t("rp_bounds", { first: dateTimeText(b.first_s), last: dateTimeText(b.last_s) });
    $("bounds").classList.toggle("warning", empty);
    for (const id of ["from", "to", "load", "last-hour"]) $(id).disabled = empty;
    if (!empty) {
      $("from").min = $("to").min = toInputValue(b.first_s);
      $("to").max = $("from").max = toInputValue(b.last_s + 60);
    }
  }

  function setLastHour() {
    const b = replay.bounds;
    const endS = Math.ceil(b.last_s / 60) * 60; // the inputs hold whole minutes
    const startS = Math.max(Math.floor(b.first_s / 60) * 60, endS - DEFAULT_WINDOW_S);
    $("from").value = toInputValue(startS);
    $("to").value = toInputValue(endS);
  }

  function readWindow() {
    const startS = fromInputValue($("from").value);
    const endS = fromInputValue($("to").value);
    if (startS === null || endS === null) return { problem: "rp_bad_input" };
    if (startS >= endS) return { problem: "rp_bad_window" };
    return { startS, endS };
  }

  function buildTracks(positions) {
    const tracks = new Map();
    for (const p of positions) { // oldest first
      let track = tracks.get(p.vehicle_id);
      if (!track) {
        track = { times: [], lats: [], lons: [], rows: [] };
        tracks.set(p.vehicle_id, track);
      }
      track.times.push(p.observed_at_s);
      track.lats.push(p.lat);
      track.lons.push(p.lon);
      track.rows.push(p);
    }
    return tracks;
  }

  async function loadWindow() {
    const wanted = readWindow();
    if (wanted.problem) {
      note(wanted.problem);
      $("loaded").classList.add("warning");
      return;
    }
    pause();
    $("loaded").classList.remove("warning");
    note("rp_loading");
    let answer;
    try {
      answer = await BT.getJson(
        `/api/history?start_s=${wanted.startS}&end_s=${wanted.endS}&limit=${HISTORY_LIMIT}`);
      BT.showError("");
    } catch (error) {
      note(null);
      BT.showError(BT.t("error_api", { detail: error.message }));
      return;
    }
    showWindow(wanted, answer);
  }

  function showWindow(wanted, answer) {
    replay.tracks = buildTracks(answer.positions);
    replay.startS = wanted.startS;
    replay.endS = wanted.endS;
    const warn = answer.truncated || answer.count === 0;
    $("loaded").classList.toggle("warning", warn);
    if (answer.count === 0) {
      note("rp_empty");
    } else if (answer.truncated) {
      replay.endS = answer.positions[answer.positions.length - 1].observed_at_s;
      note("rp_truncated", { limit: answer.limit, time: dateTimeText(replay.endS) });
    } else {
      note("rp_loaded", { count: answer.count, vehicles: replay.tracks.size });
    }
    const scrubber = $("scrubber");
    scrubber.min = String(Math.floor(replay.startS));
    scrubber.max = String(Math.ceil(replay.endS));
    scrubber.disabled = $("play").disabled = answer.count === 0;
    $("start-label").textContent = BT.timeText(replay.startS);
    $("end-label").textContent = BT.timeText(replay.endS);
    firstPositionsInView();
    seek(answer.count ? answer.positions[0].observed_at_s : replay.startS);
  }

  function firstPositionsInView() {
    const points = [];
    for (const track of replay.tracks.values()) points.push([track.lats[0], track.lons[0]]);
    if (points.length) map.leaflet.fitBounds(L.latLngBounds(points).pad(0.1), { maxZoom: 15 });
  }

  // --- positions at the play time --------------------------------------------------------------

  // The last index whose time is <= t, or -1.
  function indexAt(times, t) {
    let low = 0;
    let high = times.length - 1;
    if (t < times[0]) return -1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (times[mid] <= t) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  // Where a track's bus was at `t` ({lat, lon, row}), or null when it was not on the map.
  function positionAt(track, t) {
    const i = indexAt(track.times, t);
    if (i < 0) return null;
    const last = i === track.times.length - 1;
    const gap = last ? Infinity : track.times[i + 1] - track.times[i];
    if (gap > MAX_GAP_S) {
      return t - track.times[i] <= HOLD_S ? { lat: track.lats[i], lon: track.lons[i], row: track.rows[i] } : null;
    }
    const f = (t - track.times[i]) / gap;
    return {
      lat: track.lats[i] + f * (track.lats[i + 1] - track.lats[i]),
      lon: track.lons[i] + f * (track.lons[i + 1] - track.lons[i]),
      row: track.rows[i],
    };
  }

  function busColor(row) {
    if (row.state === "in_service" && typeof row.delay_s === "number") {
      if (row.delay_s > ON_TIME_LATE_S) return "#c0392b";
      if (row.delay_s < ON_TIME_EARLY_S) return "#b9770e";
      return "#1d6b34";
    }
    return { layover: "#2f6fb3", off_route: "#8e3bb5", in_service: "#1d6b34" }[row.state] || "#606060";
  }

  function tooltipText(id) {
    return () => {
      const track = replay.tracks.get(id);
      const at = track && positionAt(track, replay.playS);
      if (!at) return id;
      const route = map.routes.get(at.row.route_id);
      const parts = [id, route ? route.short_name : at.row.route_id, BT.stateText(at.row.state)];
      if (typeof at.row.delay_s === "number") parts.push(BT.delayText(at.row.delay_s));
      return parts.filter(Boolean).map(BT.escapeHtml).join("<br>");
    };
  }

  function drawBuses() {
    let shown = 0;
    for (const [id, track] of replay.tracks) {
      const at = positionAt(track, replay.playS);
      let marker = map.buses.get(id);
      if (!at) {
        if (marker) {
          marker.remove();
          map.buses.delete(id);
        }
        continue;
      }
      shown += 1;
      if (!marker) {
        marker = L.circleMarker([at.lat, at.lon], {
          radius: 6, weight: 1.5, color: "#fff", fillOpacity: 0.95, className: "replay-bus",
        }).bindTooltip(tooltipText(id)).addTo(map.leaflet);
        marker.getElement()?.setAttribute("data-id", id);
        map.buses.set(id, marker);
      } else {
        marker.setLatLng([at.lat, at.lon]);
      }
      const color = busColor(at.row);
      if (marker.options.fillColor !== color) marker.setStyle({ fillColor: color });
    }
    for (const id of [...map.buses.keys()]) {
      if (!replay.tracks.has(id)) {
        map.buses.get(id).remove();
        map.buses.delete(id);
      }
    }
    $("bus-count").textContent = BT.t("rp_buses", { n: shown });
  }

  // --- playing ---------------------------------------------------------------------------------

  function renderTime() {
    const text = BT.timeText(replay.playS, true);
    $("play-time").textContent = text;
    const scrubber = $("scrubber");
    if (!replay.dragging) scrubber.value = String(Math.round(replay.playS));
    scrubber.setAttribute("aria-valuetext", dateTimeText(replay.playS) + ` (${text})`);
  }

  function seek(t) {
    replay.playS = Math.min(Math.max(t, replay.startS), replay.endS);
    renderTime();
    drawBuses();
  }

  function renderPlayButton() {
    const button = $("play");
    const label = $("play-label");
    label.dataset.i18n = replay.playing ? "rp_pause" : "rp_play";
    label.textContent = BT.t(label.dataset.i18n);
    button.querySelector(".icon").textContent = replay.playing ? "❚❚" : "▶";
    button.setAttribute("aria-pressed", String(replay.playing));
  }

  function play() {
    if (!replay.tracks.size || replay.playing) return;
    if (replay.playS >= replay.endS) replay.playS = replay.startS;
    replay.playing = true;
    replay.lastFrameMs = null;
    renderPlayButton();
    requestAnimationFrame(frame);
  }

  function pause() {
    replay.playing = false;
    renderPlayButton();
  }

  function frame(nowMs) {
    if (!replay.playing) return;
    if (replay.lastFrameMs !== null) {
      replay.playS += ((nowMs - replay.lastFrameMs) / 1000) * replay.speed;
    }
    replay.lastFrameMs = nowMs;
    if (replay.playS >= replay.endS) {
      replay.playS = replay.endS;
      pause();
    }
    if (nowMs - replay.lastDrawMs >= FRAME_MS || !replay.playing) {
      replay.lastDrawMs = nowMs;
      renderTime();
      drawBuses();
    }
    if (replay.playing) requestAnimationFrame(frame);
  }

  function togglePlay() {
    if (replay.playing) pause();
    else play();
  }

  function isTyping(target) {
    if (target instanceof HTMLInputElement) return target.type !== "range";
    return target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement
      || target instanceof HTMLButtonElement || target.isContentEditable;
  }

  function setUpControls() {
    $("play").addEventListener("click", togglePlay);
    $("speed").addEventListener("change", (event) => { replay.speed = Number(event.target.value); });
    replay.speed = Number($("speed").value);
    const scrubber = $("scrubber");
    scrubber.addEventListener("pointerdown", () => { replay.dragging = true; });
    scrubber.addEventListener("pointerup", () => { replay.dragging = false; });
    scrubber.addEventListener("input", () => {
      replay.lastFrameMs = null; // playing goes on from the dragged time
      seek(Number(scrubber.value));
    });
    scrubber.addEventListener("change", () => { replay.dragging = false; });
    document.addEventListener("keydown", (event) => {
      if (event.key !== " " || event.repeat || isTyping(event.target)) return;
      event.preventDefault();
      togglePlay();
    });
    $("window-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadWindow();
    });
    $("last-hour").addEventListener("click", async () => {
      try {
        if (await loadBounds()) {
          setLastHour();
          loadWindow();
        }
      } catch (error) {
        BT.showError(BT.t("error_api", { detail: error.message }));
      }
    });
  }

  // --- start -----------------------------------------------------------------------------------

  function createMap(config, network) {
    const leaflet = L.map("map", { zoomControl: true });
    if (config.bounds) {
      const [minLon, minLat, maxLon, maxLat] = config.bounds;
      leaflet.fitBounds([[minLat, minLon], [maxLat, maxLon]]);
    } else {
      leaflet.setView([0, 0], 2);
    }
    L.tileLayer(config.tiles_url, { attribution: config.tiles_attribution, maxZoom: 19 }).addTo(leaflet);
    leaflet.createPane("routes").style.zIndex = 350; // under the buses
    L.geoJSON(network, {
      interactive: false,
      pane: "routes",
      renderer: L.canvas({ pane: "routes" }),
      filter: (feature) => feature.geometry.type === "LineString",
      style: (feature) => ({ color: feature.properties.color || "#5a6b7d", weight: 2.5, opacity: 0.55 }),
    }).addTo(leaflet);
    map.leaflet = leaflet;
  }

  async function start() {
    let config;
    let network;
    let routes;
    try {
      [config, routes, network] = await Promise.all([
        BT.loadConfig(), BT.getJson("/api/routes"), BT.getJson("/api/network.geojson"),
        BT.loadSession(),
      ]);
    } catch (error) {
      BT.showError(BT.t("error_api", { detail: error.message }));
      setTimeout(start, 5000);
      return;
    }
    BT.showError("");
    for (const r of routes.routes) map.routes.set(r.route_id, r);
    $("zone-name").textContent = config.timezone;
    createMap(config, network);
    try {
      if (await loadBounds()) {
        setLastHour();
        await loadWindow();
      }
    } catch (error) {
      BT.showError(BT.t("error_api", { detail: error.message }));
    }
  }

  function onLanguage() {
    renderPlayButton();
    if (!BT.config) return;
    renderBounds();
    if (replay.loadedNote) note(replay.loadedNote.key, replay.loadedNote.params);
    if (replay.tracks.size) {
      $("start-label").textContent = BT.timeText(replay.startS);
      $("end-label").textContent = BT.timeText(replay.endS);
      renderTime();
      drawBuses();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    BT.languageSwitch($("language"));
    document.addEventListener("bt:language", onLanguage);
    setUpControls();
    renderPlayButton();
    start();
  });
})();
