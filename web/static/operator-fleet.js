// The operator's fleet table: a row per live vehicle (vehicle, route, trip, delay, or on
// frequency lines the gap to the bus ahead against the scheduled one, state, last seen), sorted
// by any column (aria-sort says how), filtered by text and state, updated in place so scroll and
// focus stay; the totals by state above it. A row chooses its vehicle.
// An ES module imported by operator.js; uses common.js's global `BT`.

import {
  $, page, collator, ageOf, agoText, isStale, shownState, routeName, delayClass, minutesText,
  shortId, setText, element, selectVehicle, gapOf,
} from "./operator-state.js";

const STATE_ORDER = ["in_service", "layover", "off_route", "stale", "not_matched"];
const FIRST_DIRECTION = { delay: "descending" }; // the latest buses first; others ascending

// --- the fleet table -------------------------------------------------------------------------

const rowEls = new Map(); // vehicle_id → <tr>

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
  const gap = typeof v.delay_s === "number" ? null : gapOf(v); // frequency lines: the headway
  setText(delayCell, gap ? gap.text : typeof v.delay_s === "number" ? minutesText(v.delay_s) : "");
  delayCell.className = `c-delay ${gap ? gap.className : delayClass(v.delay_s)}`;
  delayCell.title = gap ? gap.title : "";
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

export function renderTable() {
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

export function setUpTableControls() {
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
