// The operator's delay chart: the fleet's median and p90 delay over the last hour on a <canvas>,
// a point per minute from the live vehicles, seeded at start from the stored history
// (/api/history: the latest ping per vehicle in a 30 s slice before each minute).
// An ES module imported by operator.js; uses common.js's global `BT`.

import {
  $, page, ON_TIME_EARLY_S, ON_TIME_LATE_S, percentile, number, minutesText, isStale,
  countedDelays, setError, apiError, clearCanvas,
} from "./operator-state.js";

const CHART_WINDOW_S = 3600;
export const SAMPLE_S = 60; // the delay chart gets a point per minute
const SEED_SLICE_S = 30; // history seeding: the latest ping per vehicle in these 30 s
const SEED_CONCURRENCY = 6;

// --- the delay chart -------------------------------------------------------------------------

function sampleOf(t, delays) {
  const ordered = [...delays].sort((a, b) => a - b);
  return { t, median: percentile(ordered, 0.5), p90: percentile(ordered, 0.9), n: ordered.length };
}

function addSample(sample) {
  if (sample.n) page.samples.push(sample);
  page.samples.sort((a, b) => a.t - b.t);
  const since = BT.serverNow() - CHART_WINDOW_S;
  page.samples = page.samples.filter((s) => s.t >= since);
  drawChart();
}

export function sampleLive() {
  page.sampledLive = true;
  const vehicles = [...page.vehicles.values()].map((v) => ({ ...v, stale: isStale(v) }));
  addSample(sampleOf(BT.serverNow(), countedDelays(vehicles)));
}

// The minute before `endS` from the stored history: the latest ping per vehicle in a short slice.
async function historySample(endS) {
  const url = `/api/history?start_s=${endS - SEED_SLICE_S}&end_s=${endS}&limit=20000`;
  const answer = await BT.getJson(url);
  const latest = new Map();
  for (const p of answer.positions) latest.set(p.vehicle_id, p); // oldest first: newest wins
  const delays = [...latest.values()]
    .filter((p) => p.state === "in_service" && typeof p.delay_s === "number")
    .map((p) => p.delay_s);
  return sampleOf(endS, delays);
}

export async function seedChart() {
  const now = BT.serverNow();
  const lastMinute = Math.floor(now / SAMPLE_S) * SAMPLE_S;
  const ends = [];
  for (let t = lastMinute; t > now - CHART_WINDOW_S; t -= SAMPLE_S) ends.push(t);
  const seeded = [];
  try {
    for (let i = 0; i < ends.length; i += SEED_CONCURRENCY) {
      const batch = ends.slice(i, i + SEED_CONCURRENCY);
      seeded.push(...await Promise.all(batch.map(historySample)));
    }
    setError("history", null);
  } catch (error) {
    setError("history", apiError(error));
  }
  for (const sample of seeded) if (sample.n) page.samples.push(sample);
  page.samples.sort((a, b) => a.t - b.t);
  drawChart();
}

function chartScale(samples) {
  let low = -2;
  let high = 10;
  for (const s of samples) {
    low = Math.min(low, s.median / 60);
    high = Math.max(high, s.p90 / 60);
  }
  return { low: Math.floor(low / 5) * 5, high: Math.ceil(high / 5) * 5 };
}

export function drawChart() {
  const canvas = $("delay-chart");
  const { ctx, width, height } = clearCanvas(canvas, 180);
  const samples = page.samples;
  const now = BT.serverNow();
  const pad = { left: 44, right: 10, top: 10, bottom: 22 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const { low, high } = chartScale(samples);
  const x = (t) => pad.left + ((t - (now - CHART_WINDOW_S)) / CHART_WINDOW_S) * plotW;
  const y = (minutes) => pad.top + (1 - (minutes - low) / (high - low)) * plotH;

  ctx.fillStyle = "rgba(29, 107, 52, 0.12)"; // the on-time band
  ctx.fillRect(pad.left, y(ON_TIME_LATE_S / 60), plotW, y(ON_TIME_EARLY_S / 60) - y(ON_TIME_LATE_S / 60));
  ctx.strokeStyle = "#d5d9de";
  ctx.fillStyle = "#4a5560";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let m = low; m <= high; m += 5) {
    ctx.beginPath();
    ctx.moveTo(pad.left, y(m));
    ctx.lineTo(pad.left + plotW, y(m));
    ctx.stroke();
    ctx.fillText(`${number(m)} ${BT.t("min_unit")}`, pad.left - 4, y(m));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let k = 0; k <= 4; k++) {
    const t = now - CHART_WINDOW_S + (k * CHART_WINDOW_S) / 4;
    ctx.fillText(BT.timeText(t), Math.min(Math.max(x(t), pad.left + 14), width - 18), pad.top + plotH + 6);
  }
  if (!samples.length) {
    ctx.fillText(BT.t("op_chart_empty"), pad.left + plotW / 2, pad.top + plotH / 2 - 6);
    canvas.setAttribute("aria-label", BT.t("op_chart_empty"));
    return;
  }
  drawLine(ctx, samples, (s) => s.p90, x, y, "#d35400");
  drawLine(ctx, samples, (s) => s.median, x, y, "#12355b");
  const last = samples[samples.length - 1];
  canvas.setAttribute("aria-label", BT.t("op_chart_label", {
    median: minutesText(last.median), p90: minutesText(last.p90),
  }));
}

function drawLine(ctx, samples, value, x, y, color) {
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  let previous = null;
  for (const s of samples) {
    const px = x(s.t);
    const py = y(value(s) / 60);
    if (previous && s.t - previous.t <= 3 * SAMPLE_S) ctx.lineTo(px, py);
    else ctx.moveTo(px, py);
    previous = s;
  }
  ctx.stroke();
  for (const s of samples) { // dots, so a lone sample shows
    ctx.beginPath();
    ctx.arc(x(s.t), y(value(s) / 60), 2, 0, 2 * Math.PI);
    ctx.fill();
  }
}
