// The operator's route statistics, from /api/fleet every 10 s: per route (and for all routes) the
// buses in service, the on-time share (from 1 min early to 5 min late) with its bar, a strip plot
// of the delays (−5 to +15 min), the median and p90 delay, and the headway adherence where the
// gaps between its buses are known (the share of gaps within ±50 % of the scheduled one, and how
// many are bunched or gapped: the measure of frequency lines, which have no delays).
// An ES module imported by operator.js; uses common.js's global `BT`.

import {
  $, page, collator, ON_TIME_EARLY_S, ON_TIME_LATE_S, percentile, number, minutesText, shareText,
  delayClass, countedDelays, setText, element, setError, apiError,
} from "./operator-state.js";

const SPREAD_MIN_S = -300; // the strip plots' axis
const SPREAD_MAX_S = 900;

// --- routes: on-time shares and delay spreads (from /api/fleet) ------------------------------

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

function headwayCell(headway) {
  const td = element("td", { className: "c-headway" });
  if (!headway || !headway.gaps || typeof headway.within_band_share !== "number") {
    td.textContent = "–";
    return td;
  }
  const within = Math.round(headway.within_band_share * headway.gaps);
  const bar = element("span", { className: "share-bar", "aria-hidden": "true" },
    element("span", { style: `width:${Math.round(headway.within_band_share * 100)}%` }));
  const text = BT.t("op_share", {
    share: shareText(headway.within_band_share), on_time: number(within), n: number(headway.gaps),
  });
  const counts = BT.t("op_bunched_gapped", {
    bunched: number(headway.bunched), gapped: number(headway.gapped),
  });
  td.append(bar, element("span", { className: "share-text", text }),
    element("span", { className: `hw-counts${headway.bunched || headway.gapped ? " hw-bad" : ""}`, text: counts }));
  if (headway.frequency_based) td.append(element("span", { className: "hw-kind", text: BT.t("op_headway_based") }));
  return td;
}

// The routes' headway adherence together, gap-weighted (for the "All routes" row).
function totalHeadway(routes) {
  const known = routes.map((r) => r.headway).filter((h) => h && h.gaps && typeof h.within_band_share === "number");
  const gaps = known.reduce((n, h) => n + h.gaps, 0);
  if (!gaps) return null;
  return {
    gaps,
    within_band_share: known.reduce((n, h) => n + h.within_band_share * h.gaps, 0) / gaps,
    bunched: known.reduce((n, h) => n + h.bunched, 0),
    gapped: known.reduce((n, h) => n + h.gapped, 0),
    frequency_based: known.every((h) => h.frequency_based),
  };
}

function routeRow(name, color, counts, punctuality, delays, isTotal, headway) {
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
    element("td", { className: "num", text: minutesText(punctuality.p90_delay_s) }),
    headwayCell(headway));
  return tr;
}

export function renderRoutes() {
  const body = $("routes-body");
  const fleet = page.fleet;
  if (!fleet) return;
  setText($("routes-asof"), BT.t("op_asof", { time: BT.timeText(fleet.now_s, true) }));
  if (!fleet.routes.length) {
    body.replaceChildren(element("tr", {},
      element("td", { colspan: "7", className: "empty", text: BT.t("op_no_routes") })));
    return;
  }
  const rows = [routeRow(BT.t("op_all_routes"), "#12355b", {
    in_service: number(fleet.totals.by_state.in_service || 0),
    vehicles: number(fleet.totals.vehicles),
  }, fleet.totals.punctuality, countedDelays(fleet.vehicles), true, totalHeadway(fleet.routes))];
  const routes = [...fleet.routes].sort((a, b) => collator.compare(a.route_short_name, b.route_short_name));
  for (const r of routes) {
    const route = page.routes.get(r.route_id);
    rows.push(routeRow(r.route_short_name, route && route.color, {
      in_service: number(r.in_service), vehicles: number(r.vehicles),
    }, r.punctuality, countedDelays(fleet.vehicles.filter((v) => v.route_id === r.route_id)), false,
    r.headway));
  }
  body.replaceChildren(...rows);
}

export async function pollFleet() {
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
