// The operator's table of how good the arrival predictions have been, from
// /api/predictions/accuracy every 30 s: per horizon (how far ahead the prediction was made:
// 0–5, 5–10, 10–20, 20+ min), the settled predictions counted, their mean absolute error and the
// share of true arrivals that fell within the predicted p10–p90 range (8 in 10 is the aim: far
// fewer, the ranges are too narrow; nearly all, too wide).
// An ES module imported by operator.js; uses common.js's global `BT`.

import { $, number, shareText, element, setText, setError, apiError } from "./operator-state.js";

const REFRESH_MS = 30000;
const COVERAGE_LOW = 0.7; // below: the ranges are too narrow
const COVERAGE_HIGH = 0.95; // above: too wide

BT.addStrings({
  en: {
    op_accuracy: "Arrival predictions: accuracy",
    op_accuracy_note: "Predictions whose bus has since reached the stop, by how far ahead they were made. 8 arrivals in 10 should fall within p10–p90.",
    col_horizon: "Ahead", col_predictions: "Predictions", col_mae: "Mean error",
    col_coverage: "Within p10–p90",
    ac_bucket: "{from}–{to} min", ac_open: "{from}+ min", ac_none: "none yet",
    ac_mae_s: "{n} s", ac_mae_min: "{n} min", ac_narrow: "ranges too narrow", ac_wide: "ranges too wide",
    ac_empty: "No prediction has been settled yet.",
  },
  fr: {
    op_accuracy: "Prévisions d'arrivée : précision",
    op_accuracy_note: "Prévisions dont le bus a depuis atteint l'arrêt, selon leur avance. 8 arrivées sur 10 devraient tomber entre p10 et p90.",
    col_horizon: "Avance", col_predictions: "Prévisions", col_mae: "Erreur moyenne",
    col_coverage: "Entre p10 et p90",
    ac_bucket: "{from}–{to} min", ac_open: "{from} min et plus", ac_none: "aucune encore",
    ac_mae_s: "{n} s", ac_mae_min: "{n} min", ac_narrow: "fourchettes trop étroites", ac_wide: "fourchettes trop larges",
    ac_empty: "Aucune prévision vérifiée pour l'instant.",
  },
  ar: {
    op_accuracy: "توقعات الوصول: الدقة",
    op_accuracy_note: "التوقعات التي وصلت حافلتها إلى المحطة منذ ذلك، حسب مدى تقدّمها. يجب أن يقع 8 من كل 10 وصولات بين p10 وp90.",
    col_horizon: "مدى التوقع", col_predictions: "التوقعات", col_mae: "متوسط الخطأ",
    col_coverage: "بين p10 وp90",
    ac_bucket: "{from}–{to} دقيقة", ac_open: "{from} دقيقة فأكثر", ac_none: "لا شيء بعد",
    ac_mae_s: "{n} ث", ac_mae_min: "{n} دقيقة", ac_narrow: "نطاقات ضيقة جدًا", ac_wide: "نطاقات واسعة جدًا",
    ac_empty: "لم يُتحقق من أي توقع بعد.",
  },
});

let answer = null;

function horizonText(b) {
  return b.to_min === null
    ? BT.t("ac_open", { from: number(b.from_min) })
    : BT.t("ac_bucket", { from: number(b.from_min), to: number(b.to_min) });
}

function maeText(s) {
  if (typeof s !== "number") return "–";
  return s < 120 ? BT.t("ac_mae_s", { n: number(s) }) : BT.t("ac_mae_min", { n: number(s / 60, 1) });
}

function coverageCell(b) {
  const td = element("td", { className: "num c-coverage" });
  if (typeof b.coverage !== "number") {
    td.textContent = "–";
    return td;
  }
  td.append(element("span", { text: shareText(b.coverage) }));
  const off = b.coverage < COVERAGE_LOW ? "narrow" : b.coverage > COVERAGE_HIGH ? "wide" : null;
  if (off) {
    td.classList.add(`off-${off}`);
    td.append(element("span", { className: "ac-flag", text: BT.t(`ac_${off}`) }));
  }
  return td;
}

export function renderAccuracy() {
  const body = $("accuracy-body");
  if (!answer) return;
  setText($("accuracy-asof"), BT.t("op_asof", { time: BT.timeText(answer.now_s, true) }));
  if (!answer.buckets.length || answer.buckets.every((b) => !b.predictions)) {
    body.replaceChildren(element("tr", {},
      element("td", { colspan: "4", className: "empty", text: BT.t("ac_empty") })));
    return;
  }
  body.replaceChildren(...answer.buckets.map((b) => element("tr", {
    "data-from-min": String(b.from_min), "data-predictions": String(b.predictions),
  },
  element("th", { scope: "row", text: horizonText(b) }),
  element("td", { className: "num", text: b.predictions ? number(b.predictions) : BT.t("ac_none") }),
  element("td", { className: "num", text: maeText(b.mae_s) }),
  coverageCell(b))));
}

async function refresh() {
  try {
    answer = await BT.getJson("/api/predictions/accuracy");
    setError("accuracy", null);
  } catch (error) {
    setError("accuracy", apiError(error));
  }
  renderAccuracy();
}

export function startAccuracy() {
  refresh();
  setInterval(refresh, REFRESH_MS);
}
