// The rider's buses: the records kept for each live bus (its glide from the last drawn position
// to the new one, its heading), and BusLayer, the one <canvas> Leaflet layer that draws them all
// as arrows copied from sprites (drawn once per colour and 5° of angle), with the click test.
// An ES module imported by rider.js; uses Leaflet's global `L` and common.js's global `BT`.
//
// Buses are drawn on one <canvas>, not one DOM marker each: with 2,000 buses DOM markers cost
// far more than a frame to move. bench/frame_time.py wraps BusLayer's `draw` to time it.

import { buses, routeColor } from "./rider-state.js";

const MOVE_MS = window.matchMedia("(prefers-reduced-motion: reduce)").matches ? 0 : 1000;
const BUS_HIT_PX = 14; // a finger is wider than an arrow
const STALE_FILL = "#c4c4c4";
const STALE_STROKE = "#5c5c5c";
// A heading is only derived from two positions further apart than this (world pixels at
// zoom 0; 1e-5 is about 1.5 m at the equator), so GPS jitter at a stop does not spin a bus.
const MIN_MOVE_WORLD = 1e-5;

// --- the bus canvas layer --------------------------------------------------------------------
// One <canvas> over the map, redrawn on animation frames while something moves. Positions are
// kept in Web Mercator "world" pixels at zoom 0 (linear in screen pixels at any zoom), so a
// frame needs one multiply-add per bus instead of a projection.
export const BusLayer = L.Layer.extend({
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

export function upsertBus(v) {
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

export function visibleBusCount() {
  const nowS = BT.serverNow();
  let n = 0;
  for (const bus of buses.values()) if (nowS - bus.v.observed_at_s <= BT.config.hide_after_s) n++;
  return n;
}
