// The rider's live map (`/`): route lines in their colours, every live bus gliding along and
// pointing where it goes, a searchable route picker whose choice lives in the URL
// (`/?routes=R1,R2`), and a side panel (a bottom sheet on phones) for a bus or a stop.
// Plain JavaScript, no build step; needs Leaflet and common.js (the global `BT`) loaded first.
//
// Data: /api/config, /api/routes, /api/network.geojson, /api/routes/{id}.geojson (stops of the
// chosen routes), /api/stops?bbox= (stops at zoom >= 15), /api/vehicles/{id}, /api/stops/{id},
// and the /ws/live websocket (through BT.LiveSocket).
//
// Buses are drawn on one <canvas> (BusLayer below), not one DOM marker each: with 2,000 buses
// DOM markers cost far more than a frame to move. For tests and the bench, `window.BT_RIDER`
// exposes the map and the drawn state (see the end of this file).
"use strict";

(() => {
  const MOVE_MS = window.matchMedia("(prefers-reduced-motion: reduce)").matches ? 0 : 1000;
  const STOPS_MIN_ZOOM = 15;
  const ROUTE_STOPS_MIN_ZOOM = 13;
  const STOPS_LIMIT = 500;
  const BUS_HIT_PX = 14; // a finger is wider than an arrow
  const STOP_HIT_PX = 10;
  const DETAIL_REFRESH_MS = 15000;
  const BUS_LIST_MAX = 100;
  const DEFAULT_COLOR = "#2f6fb3";
  const NO_ROUTE_COLOR = "#707070";
  const STALE_FILL = "#c4c4c4";
  const STALE_STROKE = "#5c5c5c";
  // A heading is only derived from two positions further apart than this (world pixels at
  // zoom 0; 1e-5 is about 1.5 m at the equator), so GPS jitter at a stop does not spin a bus.
  const MIN_MOVE_WORLD = 1e-5;

  BT.addStrings({
    en: {
      title: "Bus tracker", skip_to_routes: "Skip to the route list",
      routes: "Routes", search_routes: "Search routes", show_all: "Show all routes",
      map_label: "Map of the routes and the buses on them, live", close: "Close",
      buses_on_routes: "Buses on these routes", n_buses: "{n} buses",
      all_routes: "All routes shown", n_selected: "{n} selected",
      no_routes: "This feed has no routes: there is nothing to show.",
      no_match: "No route matches “{q}”.", no_shape: "no shape: stops joined",
      towards: "Towards", delay: "Delay", position: "Position", state: "State",
      next_stops: "Next stops", no_next_stops: "No more stops on this trip.",
      not_on_trip: "Not on a scheduled trip right now.",
      bus_gone: "This bus is no longer in the live view.", loading: "Loading…",
      departures: "Next departures", no_departures: "No departures in the coming hours.",
      scheduled_at: "scheduled {time}", scheduled: "scheduled", every_min: "every {n} min",
      live_delay: "live", bus_title: "Bus {route}", stop_title: "Stop: {name}",
      vehicle: "Vehicle {id}", unknown_route: "Route {id} is not in this feed; it was left out.",
      routes_error: "The routes could not be loaded: {detail}",
      lines_error: "The route lines could not be loaded: {detail}",
      stops_error: "The stops could not be loaded: {detail}",
      detail_error: "The details could not be loaded: {detail}",
      not_live_notice: "Not live: the positions shown may be out of date.",
      no_routes_notice: "No routes in this feed.", no_bus_yet: "No bus on these routes yet.",
      stale_note: "old position", open_stop: "Departures from {name}",
    },
    fr: {
      title: "Suivi des bus", skip_to_routes: "Aller à la liste des lignes",
      routes: "Lignes", search_routes: "Chercher une ligne", show_all: "Toutes les lignes",
      map_label: "Carte des lignes et des bus en direct", close: "Fermer",
      buses_on_routes: "Bus sur ces lignes", n_buses: "{n} bus",
      all_routes: "Toutes les lignes affichées", n_selected: "{n} choisie(s)",
      no_routes: "Ce réseau n'a aucune ligne : rien à afficher.",
      no_match: "Aucune ligne ne correspond à « {q} ».", no_shape: "sans tracé : arrêts reliés",
      towards: "Direction", delay: "Retard", position: "Position", state: "État",
      next_stops: "Prochains arrêts", no_next_stops: "Plus d'arrêt sur ce trajet.",
      not_on_trip: "Pas sur un trajet prévu pour le moment.",
      bus_gone: "Ce bus n'est plus suivi en direct.", loading: "Chargement…",
      departures: "Prochains départs", no_departures: "Aucun départ dans les prochaines heures.",
      scheduled_at: "prévu à {time}", scheduled: "horaire prévu", every_min: "toutes les {n} min",
      live_delay: "en direct", bus_title: "Bus {route}", stop_title: "Arrêt : {name}",
      vehicle: "Véhicule {id}",
      unknown_route: "La ligne {id} n'existe pas dans ce réseau ; elle est ignorée.",
      routes_error: "Les lignes n'ont pas pu être chargées : {detail}",
      lines_error: "Le tracé des lignes n'a pas pu être chargé : {detail}",
      stops_error: "Les arrêts n'ont pas pu être chargés : {detail}",
      detail_error: "Les détails n'ont pas pu être chargés : {detail}",
      not_live_notice: "Hors ligne : les positions affichées peuvent être anciennes.",
      no_routes_notice: "Aucune ligne dans ce réseau.",
      no_bus_yet: "Aucun bus sur ces lignes pour l'instant.",
      stale_note: "position ancienne", open_stop: "Départs de {name}",
    },
    ar: {
      title: "متتبع الحافلات", skip_to_routes: "انتقل إلى قائمة الخطوط",
      routes: "الخطوط", search_routes: "ابحث عن خط", show_all: "كل الخطوط",
      map_label: "خريطة الخطوط والحافلات مباشرة", close: "إغلاق",
      buses_on_routes: "الحافلات على هذه الخطوط", n_buses: "{n} حافلة",
      all_routes: "كل الخطوط معروضة", n_selected: "{n} مختارة",
      no_routes: "لا توجد خطوط في هذه الشبكة: لا شيء للعرض.",
      no_match: "لا يوجد خط يطابق «{q}».", no_shape: "بلا مسار: المحطات موصولة",
      towards: "الاتجاه", delay: "التأخير", position: "الموقع", state: "الحالة",
      next_stops: "المحطات التالية", no_next_stops: "لا محطات أخرى في هذه الرحلة.",
      not_on_trip: "ليست في رحلة مجدولة الآن.",
      bus_gone: "هذه الحافلة لم تعد في العرض المباشر.", loading: "جارٍ التحميل…",
      departures: "المغادرات التالية", no_departures: "لا مغادرات في الساعات القادمة.",
      scheduled_at: "مقرر {time}", scheduled: "حسب الجدول", every_min: "كل {n} دقيقة",
      live_delay: "مباشر", bus_title: "حافلة {route}", stop_title: "محطة: {name}",
      vehicle: "مركبة {id}", unknown_route: "الخط {id} غير موجود في هذه الشبكة؛ تم تجاهله.",
      routes_error: "تعذر تحميل الخطوط: {detail}",
      lines_error: "تعذر تحميل مسارات الخطوط: {detail}",
      stops_error: "تعذر تحميل المحطات: {detail}",
      detail_error: "تعذر تحميل التفاصيل: {detail}",
      not_live_notice: "غير مباشر: قد تكون المواقع المعروضة قديمة.",
      no_routes_notice: "لا توجد خطوط في هذه الشبكة.",
      no_bus_yet: "لا توجد حافلة على هذه الخطوط بعد.",
      stale_note: "موقع قديم", open_stop: "المغادرات من {name}",
    },
  });

  const $ = (id) => document.getElementById(id);
  const esc = BT.escapeHtml;

  // --- shared state ----------------------------------------------------------------------------
  const routesById = new Map(); // route_id -> route from /api/routes
  const selected = new Set(); // chosen route ids; empty: every route
  const buses = new Map(); // vehicle_id -> bus record (see upsertBus)
  let map = null;
  let busLayer = null;
  let live = null; // BT.LiveSocket
  let liveStatus = "connecting";
  const statusLog = []; // every status change, for tests
  let routesLoaded = false;
  let ready = false; // lines drawn and the map fitted to the chosen routes: the map stays put

  // The error banner shows every current problem, one per source ("routes", "stops", ...); a
  // source that works again takes its message back.
  const problems = new Map();
  function setProblem(source, message) {
    if (message) problems.set(source, message); else problems.delete(source);
    BT.showError([...problems.values()].join(" "));
  }

  // --- colours ---------------------------------------------------------------------------------
  function routeColor(routeId) {
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

  function routeBadge(routeId) {
    const route = routesById.get(routeId);
    const { bg, fg } = badgeColors(route);
    const name = route ? route.short_name || route.long_name : routeId || "?";
    return `<span class="route-badge" style="background:${bg};color:${fg}">${esc(name)}</span>`;
  }

  // --- the bus canvas layer --------------------------------------------------------------------
  // One <canvas> over the map, redrawn on animation frames while something moves. Positions are
  // kept in Web Mercator "world" pixels at zoom 0 (linear in screen pixels at any zoom), so a
  // frame needs one multiply-add per bus instead of a projection.
  const BusLayer = L.Layer.extend({
    onAdd(map_) {
      this._map = map_;
      this._canvas = L.DomUtil.create("canvas", "bus-canvas", map_.getContainer());
      this._canvas.setAttribute("aria-hidden", "true");
      this._ctx = this._canvas.getContext("2d");
      this._dirty = true;
      this.drawn = 0;
      this.selectedId = null;
      map_.on("resize", this._resize, this);
      map_.on("move zoom viewreset", this.invalidate, this);
      // During Leaflet's zoom animation the panes are scaled by CSS while map.getZoom() is still
      // the old zoom: hide the buses for those 250 ms rather than draw them in the wrong place.
      map_.on("zoomanim", this._hide, this);
      map_.on("zoomend", this._show, this);
      this._resize();
      this._frame = requestAnimationFrame((t) => this._loop(t));
    },

    onRemove(map_) {
      cancelAnimationFrame(this._frame);
      map_.off("resize", this._resize, this);
      map_.off("move zoom viewreset", this.invalidate, this);
      map_.off("zoomanim", this._hide, this);
      map_.off("zoomend", this._show, this);
      this._canvas.remove();
    },

    invalidate() { this._dirty = true; },
    _hide() { this._canvas.style.visibility = "hidden"; },
    _show() { this._canvas.style.visibility = ""; this._dirty = true; },

    _resize() {
      const size = this._map.getSize();
      const ratio = window.devicePixelRatio || 1;
      this._canvas.width = Math.round(size.x * ratio);
      this._canvas.height = Math.round(size.y * ratio);
      this._canvas.style.width = `${size.x}px`;
      this._canvas.style.height = `${size.y}px`;
      this._ratio = ratio;
      this._dirty = true;
    },

    _loop(nowMs) {
      this._frame = requestAnimationFrame((t) => this._loop(t));
      let moving = false;
      for (const bus of buses.values()) {
        if (bus.startMs !== 0) { moving = true; break; }
      }
      if (moving || this._dirty) {
        this._dirty = false;
        this.draw(nowMs);
      }
    },

    // world pixel (zoom 0) -> container pixel: world * 2^zoom - pixelOrigin + mapPanePos
    _transform() {
      const scale = this._map.options.crs.scale(this._map.getZoom()) / this._map.options.crs.scale(0);
      const origin = this._map.getPixelOrigin();
      const paneTopLeft = this._map.containerPointToLayerPoint([0, 0]); // = -mapPanePos
      return { scale, dx: -origin.x - paneTopLeft.x, dy: -origin.y - paneTopLeft.y };
    },

    draw(nowMs) {
      const ctx = this._ctx;
      const size = this._map.getSize();
      ctx.setTransform(this._ratio, 0, 0, this._ratio, 0, 0);
      ctx.clearRect(0, 0, size.x, size.y);
      const { scale, dx, dy } = this._transform();
      const nowS = BT.serverNow();
      const { stale_after_s: staleS, hide_after_s: hideS } = BT.config;
      const r = this._map.getZoom() >= 14 ? 8 : 6;
      const margin = 2 * r;
      const byFill = new Map(); // fill colour -> buses, so each colour is one path and one fill
      let drawn = 0;
      for (const bus of buses.values()) {
        const age = nowS - bus.v.observed_at_s;
        bus.shown = false;
        if (age > hideS) continue;
        advance(bus, nowMs);
        bus.x = bus.wx * scale + dx;
        bus.y = bus.wy * scale + dy;
        if (bus.x < -margin || bus.y < -margin || bus.x > size.x + margin || bus.y > size.y + margin) {
          continue;
        }
        bus.shown = true;
        bus.stale = age > staleS;
        drawn += 1;
        const fill = bus.stale ? STALE_FILL : routeColor(bus.v.route_id);
        if (!byFill.has(fill)) byFill.set(fill, []);
        byFill.get(fill).push(bus);
      }
      for (const [fill, group] of byFill) {
        const strip = spriteStrip(fill, fill === STALE_FILL ? STALE_STROKE : "#1b1b1b", r, this._ratio);
        const half = strip.cell / 2;
        for (const bus of group) {
          const column = spriteColumn(bus.heading);
          // whole device pixels: copying without resampling is the cheap case
          const left = Math.round((bus.x - half) * this._ratio) / this._ratio;
          const top = Math.round((bus.y - half) * this._ratio) / this._ratio;
          ctx.drawImage(strip.canvas, column * strip.px, 0, strip.px, strip.px, left, top, strip.cell, strip.cell);
        }
      }
      const chosen = this.selectedId && buses.get(this.selectedId);
      if (chosen && chosen.shown) {
        ctx.beginPath();
        ctx.arc(chosen.x, chosen.y, r + 6, 0, 2 * Math.PI);
        ctx.lineWidth = 3;
        ctx.strokeStyle = "#000000";
        ctx.stroke();
        ctx.lineWidth = 1.5;
        ctx.strokeStyle = "#ffffff";
        ctx.stroke();
      }
      this.drawn = drawn;
      this._canvas.dataset.drawn = String(drawn);
    },

    // The id of the drawn bus nearest a container point, within BUS_HIT_PX, or null.
    hitTest(point) {
      let best = null;
      let bestD2 = BUS_HIT_PX * BUS_HIT_PX;
      for (const [id, bus] of buses) {
        if (!bus.shown) continue;
        const d2 = (bus.x - point.x) ** 2 + (bus.y - point.y) ** 2;
        if (d2 <= bestD2) { best = id; bestD2 = d2; }
      }
      return best;
    },
  });

  // Arrows are drawn once per colour, size and one of SPRITE_HEADINGS directions into a strip,
  // then copied with drawImage. Without a GPU, copying 2,000 small bitmaps a frame is much
  // cheaper than filling and stroking 2,000 anti-aliased paths (see bench/frame_time.py).
  const SPRITE_HEADINGS = 72; // 5 degrees apart; the last column is the dot of a bus without one
  const sprites = new Map(); // "fill|stroke|r|ratio" -> {canvas, cell (CSS px), px (device px)}

  function spriteStrip(fill, stroke, r, ratio) {
    const key = `${fill}|${stroke}|${r}|${ratio}`;
    let strip = sprites.get(key);
    if (strip) return strip;
    const cell = Math.ceil(2 * (1.4 * r + 2));
    const canvas = document.createElement("canvas");
    canvas.width = Math.ceil(cell * ratio) * (SPRITE_HEADINGS + 1);
    canvas.height = Math.ceil(cell * ratio);
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.lineJoin = "round";
    ctx.lineWidth = 1.5;
    ctx.fillStyle = fill;
    ctx.strokeStyle = stroke;
    const px = Math.ceil(cell * ratio);
    for (let i = 0; i <= SPRITE_HEADINGS; i++) {
      const heading = i === SPRITE_HEADINGS ? null : (i * 2 * Math.PI) / SPRITE_HEADINGS;
      ctx.beginPath();
      busPath(ctx, { x: (i * px) / ratio + cell / 2, y: cell / 2, heading }, r);
      ctx.fill();
      ctx.stroke();
    }
    strip = { canvas, cell, px };
    sprites.set(key, strip);
    return strip;
  }

  function spriteColumn(heading) {
    if (heading === null) return SPRITE_HEADINGS;
    const turn = (((heading / (2 * Math.PI)) % 1) + 1) % 1;
    return Math.round(turn * SPRITE_HEADINGS) % SPRITE_HEADINGS;
  }

  // An arrow pointing along the heading (radians clockwise from north), or a dot without one.
  function busPath(ctx, bus, r) {
    const { x, y, heading } = bus;
    if (heading === null) {
      ctx.moveTo(x + r * 0.8, y);
      ctx.arc(x, y, r * 0.8, 0, 2 * Math.PI);
      return;
    }
    const sin = Math.sin(heading);
    const cos = Math.cos(heading);
    // (u, v): u to the right of travel, v forward; screen y grows southwards
    const at = (u, v) => [x + u * cos + v * sin, y + u * sin - v * cos];
    const points = [at(0, 1.4 * r), at(r, -r), at(0, -0.45 * r), at(-r, -r)];
    ctx.moveTo(points[0][0], points[0][1]);
    for (let i = 1; i < points.length; i++) ctx.lineTo(points[i][0], points[i][1]);
    ctx.closePath();
  }

  // --- buses from the live feed ----------------------------------------------------------------
  function toWorld(lat, lon) {
    return L.CRS.EPSG3857.latLngToPoint(L.latLng(lat, lon), 0);
  }

  // Move bus.wx/wy along its current glide (linear over MOVE_MS); ends the glide when done.
  function advance(bus, nowMs) {
    if (bus.startMs === 0) return;
    const t = MOVE_MS === 0 ? 1 : Math.min(1, (nowMs - bus.startMs) / MOVE_MS);
    bus.wx = bus.fromX + (bus.toX - bus.fromX) * t;
    bus.wy = bus.fromY + (bus.toY - bus.fromY) * t;
    if (t === 1) bus.startMs = 0;
  }

  function upsertBus(v) {
    const to = toWorld(v.lat, v.lon);
    const bus = buses.get(v.vehicle_id);
    if (!bus) {
      const heading = typeof v.bearing_deg === "number" ? (v.bearing_deg * Math.PI) / 180 : null;
      buses.set(v.vehicle_id, {
        v, wx: to.x, wy: to.y, fromX: to.x, fromY: to.y, toX: to.x, toY: to.y, startMs: 0,
        heading, x: NaN, y: NaN, shown: false, stale: false,
      });
      return;
    }
    advance(bus, performance.now()); // glide on from where it is drawn now, not from the target
    const moveX = to.x - bus.toX;
    const moveY = to.y - bus.toY;
    if (typeof v.bearing_deg === "number") {
      bus.heading = (v.bearing_deg * Math.PI) / 180;
    } else if (Math.hypot(moveX, moveY) > MIN_MOVE_WORLD) {
      bus.heading = Math.atan2(moveX, -moveY); // Mercator keeps angles: world dx/dy is the bearing
    }
    if (moveX !== 0 || moveY !== 0) {
      bus.fromX = bus.wx; bus.fromY = bus.wy;
      bus.toX = to.x; bus.toY = to.y;
      bus.startMs = performance.now();
    }
    bus.v = v;
  }

  function wanted(v) {
    return selected.size === 0 || selected.has(v.route_id);
  }

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
    if (busLayer) busLayer.invalidate();
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

  function visibleBusCount() {
    const nowS = BT.serverNow();
    let n = 0;
    for (const bus of buses.values()) if (nowS - bus.v.observed_at_s <= BT.config.hide_after_s) n++;
    return n;
  }

  // --- routes: the list, the selection, the URL ------------------------------------------------
  function fold(text) {
    return String(text).normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }

  function selectionFromUrl() {
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

  function renderRouteList() {
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

  function renderRouteSummary() {
    $("route-summary").textContent = selected.size
      ? BT.t("n_selected", { n: selected.size }) : BT.t("all_routes");
    $("route-clear").hidden = selected.size === 0;
  }

  function setSelection(ids, { fit = true } = {}) {
    selected.clear();
    for (const id of ids) selected.add(id);
    for (const [id, bus] of buses) if (!wanted(bus.v)) buses.delete(id);
    writeUrl();
    renderRouteSummary();
    for (const box of $("route-list").querySelectorAll("input[type=checkbox]")) {
      box.checked = selected.has(box.value);
    }
    if (live) live.subscribe({ routes: selected.size ? [...selected] : null, bbox: null });
    styleLines();
    const stopsLoaded = loadRouteStops();
    if (fit) stopsLoaded.then(fitToSelection);
    renderBusList(true);
    if (busLayer) busLayer.invalidate();
    return stopsLoaded;
  }

  async function loadRoutes() {
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
  let lineRenderer = null;

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

  async function loadLines() {
    const collection = await BT.getJson("/api/network.geojson");
    linesLayer = L.geoJSON(collection, { renderer: lineRenderer, style: lineStyle, interactive: false });
    linesLayer.addTo(map);
    styleLines();
  }

  function fitToSelection() {
    if (!selected.size) return;
    const bounds = L.latLngBounds([]);
    if (linesLayer) {
      linesLayer.eachLayer((layer) => {
        const ids = layer.feature.properties.route_ids || [layer.feature.properties.route_id];
        if (ids.some((id) => selected.has(id))) bounds.extend(layer.getBounds());
      });
    }
    for (const stop of routeStops) bounds.extend(stop.latlng);
    if (bounds.isValid()) map.fitBounds(bounds, { padding: [24, 24], maxZoom: 16 });
  }

  // --- stops -----------------------------------------------------------------------------------
  let routeStops = []; // stops of the chosen routes: [{stop_id, name, latlng}]
  let viewStops = []; // stops in view at zoom >= STOPS_MIN_ZOOM
  let drawnStops = []; // what drawStops drew: what a click can hit
  let stopsLayer = null;
  let stopsRequest = 0; // answers to older requests are ignored
  let routeStopsRequest = 0;

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

  async function loadViewStops() {
    const token = ++stopsRequest;
    if (map.getZoom() < STOPS_MIN_ZOOM) { viewStops = []; drawStops(); return; }
    const b = map.getBounds();
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
    const zoomedIn = map.getZoom() >= ROUTE_STOPS_MIN_ZOOM;
    for (const s of routeStops) if (zoomedIn || s.noShape) byId.set(s.stop_id, s);
    for (const s of viewStops) byId.set(s.stop_id, s);
    return [...byId.values()];
  }

  function drawStops() {
    stopsLayer.clearLayers();
    const radius = map.getZoom() >= 16 ? 5 : 4;
    drawnStops = shownStops();
    for (const stop of drawnStops) {
      L.circleMarker(stop.latlng, {
        renderer: lineRenderer, radius, weight: 2, color: "#1b1b1b", fillColor: "#ffffff",
        fillOpacity: 1, interactive: false,
      }).addTo(stopsLayer);
    }
  }

  function hitStop(point) {
    let best = null;
    let bestD2 = STOP_HIT_PX * STOP_HIT_PX;
    for (const stop of drawnStops) {
      const p = map.latLngToContainerPoint(stop.latlng);
      const d2 = (p.x - point.x) ** 2 + (p.y - point.y) ** 2;
      if (d2 <= bestD2) { best = stop; bestD2 = d2; }
    }
    return best;
  }

  // --- the details panel -----------------------------------------------------------------------
  let panel = null; // {kind: "bus"|"stop", id, data, error, opener}
  let panelRequest = 0;
  let panelTimer = null;

  function openPanel(kind, id, opener = null) {
    panel = { kind, id, data: null, error: null, gone: false, opener };
    busLayer.selectedId = kind === "bus" ? id : null;
    busLayer.invalidate();
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

  function closePanel() {
    if (!panel) return;
    const opener = panel.opener;
    panel = null;
    clearInterval(panelTimer);
    busLayer.selectedId = null;
    busLayer.invalidate();
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

  function renderPanel() {
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
      html += `<h3>${esc(BT.t("next_stops"))}</h3>`;
      html += trip.next_stops.length
        ? `<ol class="next-stops">${trip.next_stops.map(nextStopHtml).join("")}</ol>`
        : `<p>${esc(BT.t("no_next_stops"))}</p>`;
    }
    body.innerHTML = html;
  }

  function nextStopHtml(s) {
    const late = Math.abs(s.expected_s - s.scheduled_s) >= 60;
    const sched = late ? ` <span class="sched">${esc(BT.t("scheduled_at", { time: BT.timeText(s.scheduled_s) }))}</span>` : "";
    return `<li><button type="button" class="link" data-stop="${esc(s.stop_id)}"
      aria-label="${esc(BT.t("open_stop", { name: s.name }))}">${esc(s.name)}</button>
      <time>${esc(BT.timeText(s.expected_s))}</time>${sched}</li>`;
  }

  function renderStopPanel(title, body) {
    const d = panel.data;
    const known = drawnStops.find((s) => s.stop_id === panel.id);
    title.textContent = BT.t("stop_title", { name: d ? d.name : known ? known.name : panel.id });
    if (!d) { body.innerHTML = `<p>${esc(panel.error ? BT.t("detail_error", { detail: panel.error }) : BT.t("loading"))}</p>`; return; }
    let html = `<p class="stop-routes">${d.route_ids.map(routeBadge).join(" ")}</p>`;
    if (panel.error) html += `<p class="panel-error">${esc(BT.t("detail_error", { detail: panel.error }))}</p>`;
    html += `<h3>${esc(BT.t("departures"))}</h3>`;
    html += d.departures.length
      ? `<ol class="departures">${d.departures.map(departureHtml).join("")}</ol>`
      : `<p>${esc(BT.t("no_departures"))}</p>`;
    body.innerHTML = html;
  }

  function departureHtml(d) {
    let when;
    if (!d.exact_times && d.headway_s) {
      when = `<span class="sched">${esc(BT.t("every_min", { n: Math.round(d.headway_s / 60) }))}</span>`;
    } else if (d.live) {
      when = `<span class="delay ${delayClass(d.delay_s)}">${esc(BT.delayText(d.delay_s))}</span>`;
    } else {
      when = `<span class="sched">${esc(BT.t("scheduled"))}</span>`;
    }
    const headsign = d.vehicle_id
      ? `<button type="button" class="link" data-bus="${esc(d.vehicle_id)}">${esc(d.headsign)}</button>`
      : `<span class="headsign">${esc(d.headsign)}</span>`;
    return `<li>${routeBadge(d.route_id)} ${headsign}
      <time>${esc(BT.timeText(d.expected_s))}</time> ${when}</li>`;
  }

  function delayClass(delayS) {
    if (typeof delayS !== "number") return "";
    if (delayS >= 150) return "late";
    if (delayS <= -90) return "early";
    return "on-time";
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

  // Once a second: the panel's "updated N s ago" and the bus count.
  function tick() {
    if (panel && panel.kind === "bus") {
      const el = $("details-body").querySelector("[data-age]");
      const bus = buses.get(panel.id);
      const v = (bus && bus.v) || (panel.data && panel.data.vehicle);
      if (el && v) el.textContent = ageLine(v);
    }
    $("count").textContent = BT.t("n_buses", { n: visibleBusCount() });
    if (busLayer) busLayer.invalidate(); // staleness changes with time alone
  }

  // --- a keyboard way to the buses: a list of the buses on the chosen routes -------------------
  let busListKey = "";

  function renderBusList(force = false) {
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

  // --- page furniture --------------------------------------------------------------------------
  function showMapNotice(text) {
    const notice = $("map-notice");
    notice.dataset.kind = "fixed";
    notice.textContent = text;
    notice.hidden = false;
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
    lineRenderer = L.canvas({ padding: 0.5 });
    map = L.map("map", { preferCanvas: true, renderer: lineRenderer, keyboard: true });
    L.tileLayer(config.tiles_url, { attribution: config.tiles_attribution, maxZoom: 19 }).addTo(map);
    if (config.bounds) {
      const [minLon, minLat, maxLon, maxLat] = config.bounds;
      map.fitBounds([[minLat, minLon], [maxLat, maxLon]]);
    } else {
      map.setView([0, 0], 2);
    }
    stopsLayer = L.layerGroup().addTo(map);
    busLayer = new BusLayer();
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
    live = new BT.LiveSocket({
      onMessage: onLiveMessage,
      onStatus: onLiveStatus,
      subscription: known.length ? { routes: known, bbox: null } : null,
    });
    const stopsLoaded = setSelection(known, { fit: false });
    const linesLoaded = loadLines().catch((e) => {
      setProblem("lines", BT.t("lines_error", { detail: e.message }));
    });
    Promise.all([stopsLoaded, linesLoaded]).then(() => {
      fitToSelection();
      ready = true;
    });
    setInterval(tick, 1000);
    setInterval(() => renderBusList(), 2000);
    tick();
  }

  // --- for tests and the bench -----------------------------------------------------------------
  window.BT_RIDER = {
    get map() { return map; },
    get layer() { return busLayer; },
    get socket() { return live; },
    get status() { return liveStatus; },
    get ready() { return ready; },
    statusLog,
    selected,
    buses,
    // The buses as drawn in the last frame: page coordinates, the drawn (gliding) position.
    drawnBuses() {
      if (!map) return [];
      const box = map.getContainer().getBoundingClientRect();
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
      const box = map.getContainer().getBoundingClientRect();
      const p = map.latLngToContainerPoint(stop.latlng);
      return { x: box.left + p.x, y: box.top + p.y };
    },
    get drawnStops() { return drawnStops; },
  };

  document.addEventListener("DOMContentLoaded", main);
})();
