// The rider's predicted arrivals, drawn inside the details panel (rider-details.js calls these):
// - a stop: the buses on their way (the stop's `arrivals`, soonest first), each "in 4–7 min"
//   (from its p10 and p90 against the server's clock), "due" or "now" under a minute, with
//   its route, headsign and how old the bus's position is ("bus seen 40 s ago", flagged past
//   /api/config's stale_after_s); then the timetable's departures that no bus shown above
//   covers: "no bus reported" for a trip that should be under way with no bus on it (`no_bus`),
//   the live delay where a bus is on the trip without a prediction, "scheduled" otherwise;
//   headway-only lines say "every N min" (their buses are among the arrivals);
// - a bus: its next stops with their predicted range, and the first stop of its block's next
//   trips when they are predicted.
// The relative texts move with the clock: renderArrivalClocks (once a second, from
// rider-details.js's renderPanelAge) rewrites them in place, so focus and scroll stay.
// An ES module imported by rider-details.js; uses common.js's global `BT`.
// Data: /api/stops/{id} (arrivals, departures), /api/vehicles/{id} (trip.next_stops[].prediction,
// predictions), both fetched by rider-details.js.

import { esc, routeBadge, delayClass } from "./rider-state.js";

// An arrival whose p90 passed this long ago is left out of a stop's list: 9 buses in 10 are
// there by p90, and the predictions are made again every 30 s or so, so this bus has most
// likely passed (a bus panel keeps the stop and only drops the range).
const GONE_AFTER_S = 60;
const DUE_S = 60; // the whole range within a minute: "due" ("now" once the median has passed)

BT.addStrings({
  en: {
    arr_title: "Buses on their way", arr_none: "No tracked bus is on its way here right now.",
    arr_range: "in {lo}–{hi} min", arr_in: "in {n} min", arr_within: "within {n} min",
    arr_due: "due", arr_now: "now", arr_seen_s: "bus seen {n} s ago",
    arr_seen_min: "bus seen {n} min ago", arr_old: "old position",
    arr_next_trip: "on its next trip", arr_clock: "likely between {from} and {to}",
    arr_open_bus: "Bus {route} towards {headsign}",
    timetable: "Timetable", timetable_none: "No other departure in the coming hours.",
    no_bus: "no bus reported", no_bus_title: "This trip should be under way and no bus reports on it: the time is the timetable's.",
    every_from: "every {n} min from {time}",
    next_trips: "Then, on its next trips", next_trip_leaves: "leaves {stop}",
  },
  fr: {
    arr_title: "Bus en approche", arr_none: "Aucun bus suivi n'approche pour le moment.",
    arr_range: "dans {lo} à {hi} min", arr_in: "dans {n} min", arr_within: "d'ici {n} min",
    arr_due: "imminent", arr_now: "maintenant", arr_seen_s: "bus vu il y a {n} s",
    arr_seen_min: "bus vu il y a {n} min", arr_old: "position ancienne",
    arr_next_trip: "à sa prochaine course", arr_clock: "probablement entre {from} et {to}",
    arr_open_bus: "Bus {route} direction {headsign}",
    timetable: "Horaires", timetable_none: "Aucun autre départ dans les prochaines heures.",
    no_bus: "aucun bus signalé", no_bus_title: "Cette course devrait rouler et aucun bus ne la signale : l'heure est celle de l'horaire.",
    every_from: "toutes les {n} min à partir de {time}",
    next_trips: "Ensuite, ses prochaines courses", next_trip_leaves: "part de {stop}",
  },
  ar: {
    arr_title: "حافلات في الطريق", arr_none: "لا توجد حافلة متتبَّعة في الطريق إلى هنا الآن.",
    arr_range: "خلال {lo}–{hi} دقيقة", arr_in: "خلال {n} دقيقة", arr_within: "في غضون {n} دقيقة",
    arr_due: "على وشك الوصول", arr_now: "الآن", arr_seen_s: "شوهدت الحافلة قبل {n} ثانية",
    arr_seen_min: "شوهدت الحافلة قبل {n} دقيقة", arr_old: "موقع قديم",
    arr_next_trip: "في رحلتها التالية", arr_clock: "على الأرجح بين {from} و{to}",
    arr_open_bus: "حافلة {route} باتجاه {headsign}",
    timetable: "الجدول الزمني", timetable_none: "لا مغادرات أخرى في الساعات القادمة.",
    no_bus: "لم تُرصد أي حافلة", no_bus_title: "كان يجب أن تكون هذه الرحلة جارية ولا حافلة تُبلغ عنها: الوقت من الجدول.",
    every_from: "كل {n} دقيقة ابتداءً من {time}",
    next_trips: "ثم في رحلاتها التالية", next_trip_leaves: "تغادر {stop}",
  },
});

function num(n) { return new Intl.NumberFormat(BT.language).format(n); }

// A text of the page's language as HTML, its placeholders filled with HTML (already escaped).
function tHtml(key, html) {
  const names = Object.keys(html);
  const marks = Object.fromEntries(names.map((name, i) => [name, `\u0000${i}\u0000`]));
  return esc(BT.t(key, marks)).replace(/\u0000(\d+)\u0000/g, (_, i) => html[names[i]]);
}

// "in 4–7 min", "within 3 min", "due", "now" for a predicted range (an ArrivalRange), from now;
// null when its p90 passed more than GONE_AFTER_S ago.
export function whenText(range, nowS = BT.serverNow()) {
  const toP90 = range.p90_s - nowS;
  if (toP90 < -GONE_AFTER_S) return null;
  if (toP90 < DUE_S) return BT.t(range.predicted_s <= nowS ? "arr_now" : "arr_due");
  const lo = Math.max(0, Math.round((range.p10_s - nowS) / 60));
  const hi = Math.max(lo, Math.round(toP90 / 60));
  if (lo === 0) return BT.t("arr_within", { n: num(hi) });
  if (lo === hi) return BT.t("arr_in", { n: num(lo) });
  return BT.t("arr_range", { lo: num(lo), hi: num(hi) });
}

function seenText(observedAtS, nowS = BT.serverNow()) {
  const s = Math.max(0, Math.round(nowS - observedAtS));
  return s < 120 ? BT.t("arr_seen_s", { n: num(s) }) : BT.t("arr_seen_min", { n: num(Math.round(s / 60)) });
}

function isOld(observedAtS, nowS = BT.serverNow()) {
  return nowS - observedAtS > ((BT.config && BT.config.stale_after_s) || 90);
}

// The attributes renderArrivalClocks reads back, on the element that holds a range.
function rangeAttributes(range) {
  return `data-p10="${range.p10_s}" data-p90="${range.p90_s}" data-pred="${range.predicted_s}"`;
}

function rangeTitle(range) {
  return BT.t("arr_clock", { from: BT.timeText(range.p10_s), to: BT.timeText(range.p90_s) });
}

function whenHtml(range) {
  return `<span class="arr-when" data-when title="${esc(rangeTitle(range))}">${esc(whenText(range) || "")}</span>`;
}

function seenHtml(observedAtS) {
  if (typeof observedAtS !== "number") return "";
  const old = isOld(observedAtS);
  return `<span class="arr-seen${old ? " old" : ""}" data-seen="${observedAtS}"><span data-seen-text>${
    esc(seenText(observedAtS))}</span>${old ? ` · <strong>${esc(BT.t("arr_old"))}</strong>` : ""}</span>`;
}

// --- a stop --------------------------------------------------------------------------------

function shownArrivals(stop, nowS = BT.serverNow()) {
  return stop.arrivals.filter((a) => whenText(a.arrival, nowS) !== null);
}

function arrivalHtml(a) {
  const label = BT.t("arr_open_bus", { route: a.route_short_name, headsign: a.headsign });
  const next = a.trips_ahead > 0 ? ` <span class="arr-note">${esc(BT.t("arr_next_trip"))}</span>` : "";
  return `<li class="arrival" data-gone="hide" data-vehicle="${esc(a.vehicle_id)}" data-trip="${esc(a.trip_id)}" ${rangeAttributes(a.arrival)}>
    ${whenHtml(a.arrival)}
    <span class="arr-bus">${routeBadge(a.route_id)}
      <button type="button" class="link" data-bus="${esc(a.vehicle_id)}" aria-label="${esc(label)}">${esc(a.headsign)}</button>${next}</span>
    ${seenHtml(a.arrival.observed_at_s)}</li>`;
}

function departureHtml(d, nowS) {
  const headsign = d.vehicle_id
    ? `<button type="button" class="link" data-bus="${esc(d.vehicle_id)}">${esc(d.headsign)}</button>`
    : `<span class="headsign">${esc(d.headsign)}</span>`;
  let when;
  if (!d.exact_times && d.headway_s) {
    const n = num(Math.round(d.headway_s / 60));
    const later = d.scheduled_s - nowS > d.headway_s; // the service has not started yet
    const text = later ? BT.t("every_from", { n, time: BT.timeText(d.scheduled_s) }) : BT.t("every_min", { n });
    return `<li class="frequency" data-trip="${esc(d.trip_id)}">${routeBadge(d.route_id)} ${headsign}
      <span class="sched">${esc(text)}</span></li>`;
  }
  if (d.no_bus) {
    when = `<time class="timetable-time">${esc(BT.timeText(d.scheduled_s))}</time>
      <span class="no-bus" title="${esc(BT.t("no_bus_title"))}">${esc(BT.t("no_bus"))}</span>`;
  } else if (d.live) {
    when = `<time>${esc(BT.timeText(d.expected_s))}</time>
      <span class="delay ${delayClass(d.delay_s)}">${esc(BT.delayText(d.delay_s))}</span>`;
  } else {
    when = `<time>${esc(BT.timeText(d.scheduled_s))}</time> <span class="sched">${esc(BT.t("scheduled"))}</span>`;
  }
  const cls = d.no_bus ? "no-bus-row" : d.live ? "live" : "scheduled";
  return `<li class="${cls}" data-trip="${esc(d.trip_id)}">${routeBadge(d.route_id)} ${headsign} ${when}</li>`;
}

// The timetable's departures that the arrivals shown do not cover; a headway-only trip once.
function timetable(stop, arrivals) {
  const covered = new Set(arrivals.map((a) => `${a.trip_id}|${a.service_date}`));
  const frequencies = new Set();
  const out = [];
  for (const d of stop.departures) {
    if (!d.exact_times && d.headway_s) {
      const key = `${d.route_id}|${d.trip_id}`;
      if (frequencies.has(key)) continue;
      frequencies.add(key);
    } else if (covered.has(`${d.trip_id}|${d.service_date}`)) {
      continue;
    }
    out.push(d);
  }
  return out;
}

// The stop panel below its route badges: the buses on their way, then the timetable.
export function stopBodyHtml(stop) {
  const nowS = BT.serverNow();
  const arrivals = shownArrivals(stop, nowS);
  let html = `<h3>${esc(BT.t("arr_title"))}</h3>`;
  html += arrivals.length
    ? `<ol class="arrivals">${arrivals.map(arrivalHtml).join("")}</ol>`
    : `<p class="arr-empty">${esc(BT.t("arr_none"))}</p>`;
  const rows = timetable(stop, arrivals);
  html += `<h3>${esc(BT.t(arrivals.length ? "timetable" : "departures"))}</h3>`;
  html += rows.length
    ? `<ol class="departures">${rows.map((d) => departureHtml(d, nowS)).join("")}</ol>`
    : `<p>${esc(BT.t(stop.departures.length ? "timetable_none" : "no_departures"))}</p>`;
  return html;
}

// --- a bus ---------------------------------------------------------------------------------

function nextStopHtml(s, exactTimes) {
  const range = s.prediction;
  const shownS = range ? range.predicted_s : s.expected_s;
  const late = exactTimes && Math.abs(shownS - s.scheduled_s) >= 60;
  const sched = late ? ` <span class="sched">${esc(BT.t("scheduled_at", { time: BT.timeText(s.scheduled_s) }))}</span>` : "";
  return `<li${range ? ` ${rangeAttributes(range)}` : ""}><button type="button" class="link" data-stop="${esc(s.stop_id)}"
    aria-label="${esc(BT.t("open_stop", { name: s.name }))}">${esc(s.name)}</button>
    <time>${esc(BT.timeText(shownS))}</time>${range ? ` ${whenHtml(range)}` : ""}${sched}</li>`;
}

// The bus's next stops (with their predicted ranges).
export function nextStopsHtml(trip) {
  const html = `<h3>${esc(BT.t("next_stops"))}</h3>`;
  return html + (trip.next_stops.length
    ? `<ol class="next-stops">${trip.next_stops.map((s) => nextStopHtml(s, trip.exact_times)).join("")}</ol>`
    : `<p>${esc(BT.t("no_next_stops"))}</p>`);
}

// The first predicted stop of each of the block's next trips ("" when none is predicted).
export function nextTripsHtml(predictions) {
  const firsts = new Map();
  for (const p of predictions || []) {
    if (p.trips_ahead < 1) continue;
    const key = `${p.trips_ahead}|${p.trip_id}`;
    const seen = firsts.get(key);
    if (!seen || p.stop_sequence < seen.stop_sequence) firsts.set(key, p);
  }
  if (!firsts.size) return "";
  const items = [...firsts.values()].sort((a, b) => a.trips_ahead - b.trips_ahead).map((p) => {
    const stop = `<button type="button" class="link" data-stop="${esc(p.stop_id)}"
      aria-label="${esc(BT.t("open_stop", { name: p.stop_name }))}">${esc(p.stop_name)}</button>`;
    return `<li ${rangeAttributes(p.arrival)}>${routeBadge(p.route_id)}
      <span class="headsign">${esc(p.headsign)}</span>:
      ${tHtml("next_trip_leaves", { stop })}
      <time>${esc(BT.timeText(p.arrival.predicted_s))}</time> ${whenHtml(p.arrival)}</li>`;
  });
  return `<h3>${esc(BT.t("next_trips"))}</h3><ol class="next-trips">${items.join("")}</ol>`;
}

// --- the clock -----------------------------------------------------------------------------

// Rewrites the relative texts under `root` for the current time (once a second).
export function renderArrivalClocks(root) {
  if (!root) return;
  const nowS = BT.serverNow();
  for (const el of root.querySelectorAll("[data-p90]")) {
    const range = { p10_s: +el.dataset.p10, p90_s: +el.dataset.p90, predicted_s: +el.dataset.pred };
    const text = whenText(range, nowS);
    const when = el.querySelector("[data-when]");
    if (when && when.textContent !== (text || "")) when.textContent = text || "";
    if (el.dataset.gone === "hide") el.hidden = text === null;
  }
  for (const el of root.querySelectorAll("[data-seen]")) {
    const observed = +el.dataset.seen;
    const old = isOld(observed, nowS);
    el.classList.toggle("old", old);
    const text = seenText(observed, nowS);
    const seen = el.querySelector("[data-seen-text]");
    if (seen.textContent !== text) seen.textContent = text;
    if (old && !el.querySelector("strong")) el.insertAdjacentHTML("beforeend", ` · <strong>${esc(BT.t("arr_old"))}</strong>`);
  }
}
