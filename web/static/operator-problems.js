// The operator's problems, from /api/problems every 10 s: the stale, off-route and unmatched
// buses (each one chooses its vehicle), and the rejected messages by reason and the latest ones.
// An ES module imported by operator.js; uses common.js's global `BT`.

import {
  $, page, number, routeName, reasonText, shortId, element, setError, apiError, selectVehicle,
} from "./operator-state.js";

const RECENT_REJECTED = 10;

// --- problems (from /api/problems) -----------------------------------------------------------

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

export function renderProblems() {
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

export async function pollProblems() {
  try {
    page.problems = await BT.getJson("/api/problems");
    setError("problems", null);
    renderProblems();
  } catch (error) {
    setError("problems", apiError(error));
  }
}
