// Shared by every page: the JSON fetcher, languages (en, fr, ar with right-to-left), the agency's
// time zone, delay and age texts, and the live websocket with reconnection.
// Plain JavaScript, no build step; pages load this file first and use the global `BT`.
"use strict";

const BT = (() => {
  const LANGUAGES = ["en", "fr", "ar"];
  const RTL = new Set(["ar"]);
  const strings = { en: {}, fr: {}, ar: {} };
  let language = "en";
  let config = null;
  let serverOffsetS = 0; // server clock minus browser clock

  // --- strings -------------------------------------------------------------------------------
  function addStrings(table) {
    // table: {en: {key: text}, fr: {...}, ar: {...}}; texts may hold {name} placeholders
    for (const lang of LANGUAGES) Object.assign(strings[lang], table[lang] || {});
  }

  function t(key, params = {}) {
    const text = strings[language][key] ?? strings.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? params[name] : `{${name}}`));
  }

  function pickLanguage() {
    const fromUrl = new URLSearchParams(location.search).get("lang");
    if (LANGUAGES.includes(fromUrl)) return fromUrl;
    const saved = localStorage.getItem("bt.lang");
    if (LANGUAGES.includes(saved)) return saved;
    for (const wanted of navigator.languages || [navigator.language || "en"]) {
      const base = wanted.toLowerCase().split("-")[0];
      if (LANGUAGES.includes(base)) return base;
    }
    return "en";
  }

  function setLanguage(lang) {
    if (!LANGUAGES.includes(lang)) return;
    language = lang;
    localStorage.setItem("bt.lang", lang);
    document.documentElement.lang = lang;
    document.documentElement.dir = RTL.has(lang) ? "rtl" : "ltr";
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-label]")) {
      el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    }
    for (const el of document.querySelectorAll("[data-i18n-placeholder]")) {
      el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
    }
    document.dispatchEvent(new CustomEvent("bt:language", { detail: lang }));
  }

  // A <select> that switches the language; `select` is an existing element.
  function languageSwitch(select) {
    const names = { en: "English", fr: "Français", ar: "العربية" };
    select.replaceChildren(...LANGUAGES.map((lang) => {
      const option = document.createElement("option");
      option.value = lang;
      option.textContent = names[lang];
      option.lang = lang;
      return option;
    }));
    select.value = language;
    select.addEventListener("change", () => setLanguage(select.value));
    document.addEventListener("bt:language", () => { select.value = language; });
  }

  addStrings({
    en: {
      live: "live", reconnecting: "not live: reconnecting…", connecting: "connecting…",
      on_time: "on time", min_late: "{n} min late", min_early: "{n} min early",
      updated_s: "updated {n} s ago", updated_min: "updated {n} min ago",
      error_api: "The tracker did not answer: {detail}", no_data: "No data",
      state_in_service: "in service", state_layover: "layover", state_off_route: "off route",
      state_not_matched: "not matched", state_stale: "stale",
      language: "Language", nav_map: "Live map", nav_operator: "Operator", nav_replay: "Replay",
      signed_in_as: "Signed in as", log_out: "Log out", login_title: "Operator login",
      login_name: "Name", login_password: "Password", login_submit: "Log in",
      login_wrong: "Wrong name or password.", login_busy: "Logging in…",
    },
    fr: {
      live: "en direct", reconnecting: "hors ligne : reconnexion…", connecting: "connexion…",
      on_time: "à l'heure", min_late: "{n} min de retard", min_early: "{n} min d'avance",
      updated_s: "mis à jour il y a {n} s", updated_min: "mis à jour il y a {n} min",
      error_api: "Le serveur n'a pas répondu : {detail}", no_data: "Aucune donnée",
      state_in_service: "en service", state_layover: "au terminus", state_off_route: "hors ligne",
      state_not_matched: "non reconnu", state_stale: "position ancienne",
      language: "Langue", nav_map: "Carte en direct", nav_operator: "Exploitation",
      nav_replay: "Rejouer",
      signed_in_as: "Connecté en tant que", log_out: "Se déconnecter",
      login_title: "Connexion exploitation", login_name: "Nom", login_password: "Mot de passe",
      login_submit: "Se connecter", login_wrong: "Nom ou mot de passe incorrect.",
      login_busy: "Connexion…",
    },
    ar: {
      live: "مباشر", reconnecting: "غير مباشر: جارٍ إعادة الاتصال…", connecting: "جارٍ الاتصال…",
      on_time: "في الموعد", min_late: "متأخر {n} دقيقة", min_early: "مبكر {n} دقيقة",
      updated_s: "حُدّث قبل {n} ثانية", updated_min: "حُدّث قبل {n} دقيقة",
      error_api: "الخادم لم يستجب: {detail}", no_data: "لا توجد بيانات",
      state_in_service: "في الخدمة", state_layover: "في المحطة النهائية",
      state_off_route: "خارج المسار", state_not_matched: "غير مطابق",
      state_stale: "موقع قديم",
      language: "اللغة", nav_map: "الخريطة المباشرة", nav_operator: "التشغيل",
      nav_replay: "إعادة العرض",
      signed_in_as: "متصل باسم", log_out: "تسجيل الخروج", login_title: "دخول التشغيل",
      login_name: "الاسم", login_password: "كلمة المرور", login_submit: "دخول",
      login_wrong: "الاسم أو كلمة المرور غير صحيحة.", login_busy: "جارٍ الدخول…",
    },
  });

  // --- the server ------------------------------------------------------------------------------
  // JSON to and from the API. Writes carry the session's CSRF token (`loadSession`); a 401 means
  // the login has ended (or there was none): the browser goes to the login page, then back here.
  let csrfToken = null;
  async function sendJson(method, url, body) {
    const headers = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (method !== "GET" && csrfToken) headers["x-csrf-token"] = csrfToken;
    let response;
    try {
      response = await fetch(url, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new Error(`${url}: ${e.message}`);
    }
    if (response.status === 401 && document.body.dataset.login === "required") {
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(`${url}: ${response.status} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    }
    return response.status === 204 ? null : response.json();
  }

  function getJson(url) { return sendJson("GET", url); }

  // The operator pages: who is logged in (shown in the header, with a "Log out" button).
  async function loadSession() {
    const me = await getJson("/api/me");
    csrfToken = me.csrf_token;
    const who = document.getElementById("who");
    if (who) {
      who.hidden = false;
      who.querySelector(".who-name").textContent = me.name;
      who.querySelector("button").addEventListener("click", async () => {
        await sendJson("POST", "/api/logout");
        location.assign("/login");
      });
    }
    return me;
  }

  async function loadConfig() {
    config = await getJson("/api/config");
    serverOffsetS = config.now_s - Date.now() / 1000;
    return config;
  }

  function serverNow() { return Date.now() / 1000 + serverOffsetS; }
  function setServerTime(serverTimeS) { serverOffsetS = serverTimeS - Date.now() / 1000; }

  // --- texts -----------------------------------------------------------------------------------
  function delayText(delayS) {
    if (typeof delayS !== "number") return "";
    const n = Math.round(delayS / 60);
    if (n === 0) return t("on_time");
    return n > 0 ? t("min_late", { n }) : t("min_early", { n: -n });
  }

  function ageText(ageS) {
    const s = Math.max(0, Math.round(ageS));
    return s < 120 ? t("updated_s", { n: s }) : t("updated_min", { n: Math.round(s / 60) });
  }

  function stateText(state) { return t(`state_${state}`); }

  // HH:MM in the agency's time zone (config.timezone), in the page's language.
  function timeText(epochS, withSeconds = false) {
    const options = { hour: "2-digit", minute: "2-digit", hour12: false };
    if (withSeconds) options.second = "2-digit";
    if (config && config.timezone) options.timeZone = config.timezone;
    return new Intl.DateTimeFormat(language, options).format(new Date(epochS * 1000));
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
  }

  function showError(message) {
    const el = document.getElementById("error");
    if (!el) return;
    el.textContent = message;
    el.hidden = !message;
  }

  // --- the live websocket ----------------------------------------------------------------------
  // new BT.LiveSocket({onMessage, onStatus, subscription}); status is "live" or "reconnecting".
  class LiveSocket {
    constructor({ onMessage, onStatus = () => {}, subscription = null }) {
      this.onMessage = onMessage;
      this.onStatus = onStatus;
      this.subscription = subscription; // {routes: [...]|null, bbox: [...]|null}
      this.retryMs = 500;
      this.socket = null;
      this.connect();
    }

    connect() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${location.host}/ws/live`);
      this.socket = socket;
      socket.onopen = () => {
        this.retryMs = 500;
        if (this.subscription) socket.send(JSON.stringify({ subscribe: this.subscription }));
        this.onStatus("live");
      };
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.server_time_s) setServerTime(message.server_time_s);
        this.onMessage(message);
      };
      socket.onclose = () => {
        this.onStatus("reconnecting");
        setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 15000);
      };
    }

    subscribe(subscription) {
      this.subscription = subscription;
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify({ subscribe: subscription }));
      }
    }
  }

  language = pickLanguage();
  document.addEventListener("DOMContentLoaded", () => setLanguage(language));

  return {
    addStrings, t, setLanguage, languageSwitch, get language() { return language; },
    getJson, sendJson, loadSession, loadConfig, get config() { return config; }, serverNow,
    delayText, ageText, stateText, timeText, escapeHtml, showError, LiveSocket,
  };
})();
