// The operator's headway adherence chart of the frequency lines (routes whose scheduled gaps
// are frequencies.txt headways: they have no delays, so their measure is the gaps between their
// buses): on a <canvas>, a column per /api/fleet poll (every 10 s, kept for an hour) of the
// share of their gaps within ±50 % of the headway (green) and of those bunched or gapped (red),
// all frequency lines together, weighted by their gaps. The figure stays hidden while no
// frequency line has a gap measured. The samples are the page's own (the API has no history of
// headways), so the chart starts when the page opens; its note says since when.
// An ES module imported by operator.js, which calls sampleAdherence after each /api/fleet poll;
// uses common.js's global `BT`.

import { $, page, number, shareText, setText, clearCanvas } from "./operator-state.js";

const WINDOW_S = 3600;

BT.addStrings({
  en: {
    op_adherence_title: "Headway adherence of frequency lines",
    op_within_band: "within ±50 % of the headway", op_bunched_or_gapped: "bunched or gapped",
    ad_since: "Every 10 s since {time}.",
    ad_label: "Frequency lines now: {within} of their {n} gaps within ±50 % of the headway ({share}), {bunched} bunched, {gapped} gapped.",
    ad_routes: "Routes: {routes}.",
  },
  fr: {
    op_adherence_title: "Régularité des lignes à intervalle",
    op_within_band: "à ±50 % de l'intervalle", op_bunched_or_gapped: "groupés ou espacés",
    ad_since: "Toutes les 10 s depuis {time}.",
    ad_label: "Lignes à intervalle : {within} de leurs {n} écarts à ±50 % de l'intervalle ({share}), {bunched} groupés, {gapped} espacés.",
    ad_routes: "Lignes : {routes}.",
  },
  ar: {
    op_adherence_title: "انتظام الفواصل في خطوط التردد",
    op_within_band: "ضمن ±50 % من الفاصل", op_bunched_or_gapped: "متكتلة أو متباعدة",
    ad_since: "كل 10 ث منذ {time}.",
    ad_label: "خطوط التردد الآن: {within} من {n} فواصل ضمن ±50 % من الفاصل ({share})، {bunched} متكتلة، {gapped} متباعدة.",
    ad_routes: "الخطوط: {routes}.",
  },
});

const samples = []; // {t, gaps, within, bunched, gapped, routes}, oldest first
let firstS = null;

// One column from the latest /api/fleet (page.fleet).
export function sampleAdherence() {
  const fleet = page.fleet;
  if (!fleet) return;
  const lines = fleet.routes.filter((r) => r.headway && r.headway.frequency_based && r.headway.gaps
    && typeof r.headway.within_band_share === "number");
  if (lines.length) {
    const gaps = lines.reduce((n, r) => n + r.headway.gaps, 0);
    samples.push({
      t: fleet.now_s,
      gaps,
      within: lines.reduce((n, r) => n + Math.round(r.headway.within_band_share * r.headway.gaps), 0),
      bunched: lines.reduce((n, r) => n + r.headway.bunched, 0),
      gapped: lines.reduce((n, r) => n + r.headway.gapped, 0),
      routes: lines.map((r) => r.route_short_name),
    });
    if (firstS === null) firstS = fleet.now_s;
  }
  while (samples.length && samples[0].t < fleet.now_s - WINDOW_S) samples.shift();
  drawAdherence();
}

export function drawAdherence() {
  const figure = $("adherence-figure");
  figure.hidden = !samples.length;
  if (!samples.length) return;
  setText($("adherence-since"), BT.t("ad_since", { time: BT.timeText(firstS) }));
  const canvas = $("adherence-chart");
  const { ctx, width, height } = clearCanvas(canvas, 150);
  const pad = { left: 44, right: 10, top: 8, bottom: 22 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const now = samples[samples.length - 1].t;
  const x = (t) => pad.left + ((t - (now - WINDOW_S)) / WINDOW_S) * plotW;
  const y = (share) => pad.top + (1 - share) * plotH;

  ctx.strokeStyle = "#d5d9de";
  ctx.fillStyle = "#4a5560";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const share of [0, 0.5, 1]) {
    ctx.beginPath();
    ctx.moveTo(pad.left, y(share));
    ctx.lineTo(pad.left + plotW, y(share));
    ctx.stroke();
    ctx.fillText(shareText(share), pad.left - 4, y(share));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let k = 0; k <= 4; k++) {
    const t = now - WINDOW_S + (k * WINDOW_S) / 4;
    ctx.fillText(BT.timeText(t), Math.min(Math.max(x(t), pad.left + 14), width - 18), pad.top + plotH + 6);
  }
  const column = Math.max(2, (plotW * 10) / WINDOW_S); // a 10 s poll's width
  for (const s of samples) {
    const left = x(s.t) - column;
    const within = s.within / s.gaps;
    const off = (s.bunched + s.gapped) / s.gaps;
    ctx.fillStyle = "#1d6b34";
    ctx.fillRect(left, y(within), column, y(0) - y(within));
    ctx.fillStyle = "#c0392b";
    ctx.fillRect(left, y(1), column, y(1 - off) - y(1));
  }
  const last = samples[samples.length - 1];
  canvas.setAttribute("aria-label", `${BT.t("ad_label", {
    within: number(last.within), n: number(last.gaps), share: shareText(last.within / last.gaps),
    bunched: number(last.bunched), gapped: number(last.gapped),
  })} ${BT.t("ad_routes", { routes: last.routes.join(", ") })}`);
}
