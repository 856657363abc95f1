// Trips the operator marks cancelled, and undoes: a ghost trip's alert (a trip with no bus) gets
// a "Mark cancelled" button (POST /api/operator/cancellations); the cancelled trips are listed
// under the alerts, each with "Undo" (DELETE /api/operator/cancellations/{date}/{trip}). A
// cancelled trip is told CANCELED in the GTFS-realtime feeds and is no longer a ghost; the
// list is read at start, after each action and every 30 s (another operator may act).
// An ES module imported by operator-alerts.js; uses common.js's global `BT`.

import { $, number, routeName, element, setText, setError, apiError } from "./operator-state.js";

const URL = "/api/operator/cancellations";
const REREAD_MS = 30000;

BT.addStrings({
  en: {
    cx_mark: "Mark cancelled", cx_marking: "Cancelling…", cx_title: "Cancelled trips",
    cx_none: "No trip is cancelled.", cx_undo: "Undo", cx_undoing: "Undoing…",
    cx_trip: "Trip {trip} · route {route} · due {time}", cx_when: "cancelled at {time}",
    cx_mark_help: "Tell riders and journey planners this trip does not run today.",
    cx_undo_help: "The trip runs after all.",
  },
  fr: {
    cx_mark: "Marquer annulée", cx_marking: "Annulation…", cx_title: "Courses annulées",
    cx_none: "Aucune course annulée.", cx_undo: "Rétablir", cx_undoing: "Rétablissement…",
    cx_trip: "Course {trip} · ligne {route} · prévue à {time}", cx_when: "annulée à {time}",
    cx_mark_help: "Dire aux voyageurs et aux calculateurs d'itinéraires que cette course ne roule pas aujourd'hui.",
    cx_undo_help: "La course roule finalement.",
  },
  ar: {
    cx_mark: "وضع علامة ملغاة", cx_marking: "جارٍ الإلغاء…", cx_title: "الرحلات الملغاة",
    cx_none: "لا توجد رحلة ملغاة.", cx_undo: "تراجع", cx_undoing: "جارٍ التراجع…",
    cx_trip: "الرحلة {trip} · الخط {route} · مقررة {time}", cx_when: "أُلغيت في {time}",
    cx_mark_help: "أبلغ الركاب وتطبيقات التخطيط أن هذه الرحلة لا تعمل اليوم.",
    cx_undo_help: "الرحلة تعمل في النهاية.",
  },
});

let cancelled = []; // the API's cancellations, by service date then trip
let onChanged = () => {};
const pending = new Set(); // "trip|date" being cancelled (the alerts list is redrawn meanwhile)

const send = (method, url, body) => BT.sendJson(method, url, body);

// The "Mark cancelled" button of a ghost trip's alert; `done` runs once the trip is cancelled.
export function cancelButton(alert, done) {
  const key = `${alert.trip_id}|${alert.service_date}`;
  const button = element("button", {
    type: "button", className: "alert-cancel", title: BT.t("cx_mark_help"), "data-trip": alert.trip_id,
    text: BT.t(pending.has(key) ? "cx_marking" : "cx_mark"),
  });
  button.disabled = pending.has(key);
  button.addEventListener("click", async () => {
    pending.add(key);
    button.disabled = true;
    setText(button, BT.t("cx_marking"));
    try {
      await send("POST", URL, { trip_id: alert.trip_id, service_date: alert.service_date });
      setError("cancellations", null);
      done();
    } catch (error) {
      setError("cancellations", apiError(error));
      button.disabled = false;
      setText(button, BT.t("cx_mark"));
    } finally {
      pending.delete(key);
    }
    await readCancelled();
  });
  return button;
}

async function undo(c, button) {
  button.disabled = true;
  setText(button, BT.t("cx_undoing"));
  try {
    await send("DELETE", `${URL}/${encodeURIComponent(c.service_date)}/${encodeURIComponent(c.trip_id)}`);
    setError("cancellations", null);
    onChanged(); // its ghost alert may be back
  } catch (error) {
    setError("cancellations", apiError(error));
  }
  await readCancelled();
}

export async function readCancelled() {
  try {
    cancelled = (await BT.getJson(URL)).cancellations;
    setError("cancellations", null);
  } catch (error) {
    setError("cancellations", apiError(error));
  }
  renderCancelled();
}

// `changed`: what to do when a cancellation is undone (re-read the alerts).
export function startCancellations(changed) {
  onChanged = changed;
  document.addEventListener("bt:language", renderCancelled);
  readCancelled();
  setInterval(readCancelled, REREAD_MS);
}

export function renderCancelled() {
  const list = $("cancelled-list");
  if (!list) return;
  setText($("cancelled-title"), BT.t("cx_title"));
  setText($("cancelled-count"), number(cancelled.length));
  if (!cancelled.length) {
    list.replaceChildren(element("li", { className: "none", text: BT.t("cx_none") }));
    return;
  }
  list.replaceChildren(...cancelled.map((c) => {
    const button = element("button", {
      type: "button", className: "link cancel-undo", text: BT.t("cx_undo"), title: BT.t("cx_undo_help"),
    });
    button.addEventListener("click", () => undo(c, button));
    const what = BT.t("cx_trip", {
      trip: c.trip_id, route: routeName(c.route_id), time: BT.timeText(c.scheduled_departure_s),
    });
    const when = BT.t("cx_when", { time: BT.timeText(c.cancelled_at_s) });
    return element("li", {
      className: "cancelled", "data-trip": c.trip_id, "data-date": c.service_date,
      "data-in-feeds": String(c.in_feeds),
    }, element("span", { className: "cancelled-what", text: what }), " ",
    element("span", { className: "alert-since", text: c.reason ? `${when}: ${c.reason}` : when }), " ", button);
  }));
}
