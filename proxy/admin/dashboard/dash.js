// aigate dashboard: asks /api/usage and /api/recent on this listener (same origin, the
// browser sends the Basic credentials it was given) and draws with SVG.  Text from the log is
// only ever set as textContent, never parsed as HTML.
"use strict";

const T = {
  en: {
    title: "AI service usage", period: "Period", p1h: "Last hour", p24h: "Last 24 hours",
    p7d: "Last 7 days", p30d: "Last 30 days", service: "Service", category: "Category",
    user: "User", group: "Group", action: "Action", any: "Any", apply: "Apply",
    requests: "Requests", allow: "Allowed", warn: "Caution shown", ack: "Acknowledged",
    block: "Blocked", dlp: "Personal data", authfail: "Auth failed", error: "Error",
    other: "Other (auth failed, error)",
    short: { allow: "allow", warn: "warn", ack: "ack", block: "block", "auth-fail": "auth-fail",
             error: "error" },
    overTime: "Requests per AI service over time, by action",
    caution: "Caution pages shown and acknowledged, per service",
    rules: "Blocks and personal-data hits, by rule", top: "Top users and groups per service",
    recent: "Newest audit lines", shown: "Shown", acked: "Acknowledged", rate: "Rate",
    rule: "Rule", time: "Time", status: "Status", target: "Target", users: "Users",
    groups: "Groups", noData: "Nothing in this period.", loading: "Loading…",
    updated: "Updated", failed: "Could not load", noGroup: "(no group)", anon: "(anonymous)",
    noRule: "(no rule)", noService: "(not an AI service)", c_chat: "Chat", c_api: "API",
    c_image: "Image", c_code: "Code", c_search: "Search", c_agent: "Agent", c_other: "Other",
  },
  ko: {
    title: "AI 서비스 사용 현황", period: "기간", p1h: "최근 1시간", p24h: "최근 24시간",
    p7d: "최근 7일", p30d: "최근 30일", service: "서비스", category: "분류", user: "사용자",
    group: "그룹", action: "조치", any: "전체", apply: "적용", requests: "요청",
    allow: "허용", warn: "주의 표시", ack: "확인함", block: "차단", dlp: "개인정보",
    authfail: "인증 실패", error: "오류", other: "기타 (인증 실패, 오류)",
    short: { allow: "허용", warn: "주의", ack: "확인", block: "차단", "auth-fail": "인증 실패",
             error: "오류" },
    overTime: "AI 서비스별 시간대 요청 (조치별)",
    caution: "서비스별 주의 페이지 표시와 확인",
    rules: "규칙별 차단과 개인정보 탐지", top: "서비스별 상위 사용자와 그룹",
    recent: "최근 감사 기록", shown: "표시", acked: "확인", rate: "확인율", rule: "규칙",
    time: "시각", status: "상태", target: "대상", users: "사용자", groups: "그룹",
    noData: "이 기간에는 기록이 없습니다.", loading: "불러오는 중…", updated: "갱신",
    failed: "불러오지 못했습니다", noGroup: "(그룹 없음)", anon: "(익명)",
    noRule: "(규칙 없음)", noService: "(AI 서비스 아님)", c_chat: "대화", c_api: "API",
    c_image: "이미지", c_code: "코드", c_search: "검색", c_agent: "에이전트", c_other: "기타",
  },
};
const lang = document.documentElement.lang === "ko" ? "ko" : "en";
const t = (k) => T[lang][k] || T.en[k] || k;
const ACTIONS = ["allow", "warn", "ack", "block"];
const SVG = "http://www.w3.org/2000/svg";
const MAX_CHARTS = 6;
const nf = new Intl.NumberFormat(lang === "ko" ? "ko-KR" : "en-US");

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function tzOffset() {
  const m = -new Date().getTimezoneOffset();
  const a = Math.abs(m);
  return (m < 0 ? "-" : "+") + String(Math.floor(a / 60)).padStart(2, "0") + ":" +
    String(a % 60).padStart(2, "0");
}

// The period and filters as query parameters (every request of one refresh shares "to").
function baseParams(to) {
  const p = new URLSearchParams();
  p.set("period", document.getElementById("period").value);
  p.set("to", to);
  for (const f of ["service", "category", "user", "group", "action"]) {
    const v = document.getElementById("f-" + f).value.trim();
    if (v) p.set(f, v);
  }
  return p;
}
async function api(path, params) {
  const r = await fetch(path + "?" + params.toString(), { credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.status);
  return body;
}
function usage(base, extra) {
  const p = new URLSearchParams(base);
  for (const [k, v] of Object.entries(extra)) p.set(k, v);
  return api("api/usage", p).then((b) => b.rows);
}
function keyText(k, kind) {
  if (k !== null) return k;
  return kind === "group" ? t("noGroup") : kind === "user" ? t("anon")
    : kind === "rule" ? t("noRule") : t("noService");
}

function sumRows(rows) {
  const s = { requests: 0, allow: 0, warn: 0, ack: 0, block: 0, dlp: 0 };
  for (const r of rows) for (const k of Object.keys(s)) s[k] += r[k];
  return s;
}
function drawSummary(rows) {
  const box = document.getElementById("summary");
  const s = sumRows(rows);
  box.replaceChildren(...["requests", "allow", "warn", "ack", "block", "dlp"].map((k) =>
    el("div", { class: "card " + k }, el("div", { class: "n" }, nf.format(s[k])),
       el("div", { class: "l" }, t(k)))));
}
function drawLegend() {
  const box = document.getElementById("legend");
  box.replaceChildren(...[...ACTIONS, "other", "dlp"].map((a) => {
    const i = el("i");
    i.style.background = `var(--${a})`;
    return el("span", {}, i, t(a));
  }));
}

// The bucket size for the period: minutes for an hour, hours up to a week, days beyond.
function bucketOf(period) {
  return period === "1h" ? ["minute", 60e3] : period === "30d" ? ["day", 864e5] : ["hour", 36e5];
}
function bucketStarts(fromMs, toMs, unit, by) {
  // Buckets start on the minute/hour/day of the browser's time zone, as the API's keys do.
  const off = -new Date(fromMs).getTimezoneOffset() * 60e3;
  const out = [];
  let b = Math.floor((fromMs + off) / unit) * unit - off;
  for (; b < toMs && out.length < 2000; b += unit) out.push(b);
  return out;
}
function keyMs(key, by) {
  return by === "day" ? new Date(key + "T00:00:00" + tzOffset()).getTime() : new Date(key).getTime();
}
function label(ms, by) {
  const d = new Date(ms);
  const o = by === "day" ? { month: "numeric", day: "numeric" }
    : by === "minute" ? { hour: "2-digit", minute: "2-digit" }
    : { month: "numeric", day: "numeric", hour: "2-digit" };
  return d.toLocaleString(lang === "ko" ? "ko-KR" : "en-US", o);
}

// One stacked-bar chart: per bucket, allow/warn/ack/block stacked, dlp as a dot above.
function drawChart(title, total, rows, fromMs, toMs, by, unit) {
  // A narrower drawing on a phone, so that its labels are not scaled down to nothing.
  const W = window.innerWidth < 560 ? 380 : 600, H = 190, L = 44, R = 8, TOP = 10, B = 26;
  const starts = bucketStarts(fromMs, toMs, unit, by);
  const byStart = new Map(rows.map((r) => [keyMs(r.key, by), r]));
  const max = Math.max(1, ...rows.map((r) => r.requests));
  const bw = (W - L - R) / Math.max(1, starts.length);
  // headroom above the highest bar for its personal-data dot
  const y = (v) => TOP + (H - TOP - B) * (1 - v / (max * 1.12));
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  for (const g of [0, 0.5, 1]) {
    const gy = y(max * g);
    s.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: gy, y2: gy }));
    s.append(svg("text", { x: L - 4, y: gy + 4, "text-anchor": "end" },
      nf.format(Math.round(max * g))));
  }
  starts.forEach((st, i) => {
    const r = byStart.get(st);
    if (!r) return;
    let acc = 0;
    const other = r.requests - r.allow - r.warn - r.ack - r.block;
    for (const a of [...ACTIONS, "other"]) {
      const v = a === "other" ? other : r[a];
      if (v <= 0) continue;
      const y0 = y(acc + v), h = y(acc) - y(acc + v);
      const rect = svg("rect", { x: L + i * bw + bw * 0.1, y: y0, width: Math.max(1, bw * 0.8),
        height: Math.max(0.5, h), class: "a-" + a, "data-action": a });
      rect.append(svg("title", {}, `${label(st, by)} ${t(a)}: ${nf.format(v)}`));
      s.append(rect);
      acc += v;
    }
    if (r.dlp > 0) {
      const c = svg("circle", { cx: L + i * bw + bw / 2, cy: Math.max(TOP + 3, y(acc) - 5), r: 3,
        class: "a-dlp", "data-action": "dlp" });
      c.append(svg("title", {}, `${label(st, by)} ${t("dlp")}: ${nf.format(r.dlp)}`));
      s.append(c);
    }
  });
  const ticks = starts.length <= 1 ? [0] : [0, Math.floor(starts.length / 2), starts.length - 1];
  for (const i of ticks) {
    const anchor = i === 0 ? "start" : i === starts.length - 1 ? "end" : "middle";
    const x = i === 0 ? L : i === starts.length - 1 ? W - R : L + i * bw + bw / 2;
    s.append(svg("text", { x, y: H - 8, "text-anchor": anchor }, label(starts[i], by)));
  }
  return el("div", { class: "chart" },
    el("h3", {}, title, " ", el("span", { class: "total" }, nf.format(total))), s);
}

function table(id, head, rows, empty) {
  const tb = document.getElementById(id);
  const thead = el("tr", {}, ...head.map(([h, num]) => el("th", num ? { class: "num" } : {}, h)));
  if (!rows.length) {
    tb.replaceChildren(thead, el("tr", {}, el("td", { class: "empty", colspan: head.length },
      empty || t("noData"))));
    return;
  }
  tb.replaceChildren(thead, ...rows.map((cells) => el("tr", {}, ...cells.map((c, i) =>
    c instanceof Node ? el("td", {}, c) : el("td", head[i][1] ? { class: "num" } : {}, c)))));
}

function drawCaution(services) {
  const rows = services.filter((r) => r.warn > 0 || r.ack > 0).slice(0, 12).map((r) => [
    r.key, nf.format(r.warn), nf.format(r.ack),
    r.warn ? Math.round((100 * r.ack) / r.warn) + "%" : "–"]);
  table("caution", [[t("service")], [t("shown"), 1], [t("acked"), 1], [t("rate"), 1]], rows);
}
function drawRules(rules) {
  const rows = rules.filter((r) => r.block > 0 || r.dlp > 0)
    .sort((a, b) => b.block + b.dlp - a.block - a.dlp)
    .map((r) => [keyText(r.key, "rule"), nf.format(r.block), nf.format(r.dlp), nf.format(r.requests)]);
  table("rules", [[t("rule")], [t("block"), 1], [t("dlp"), 1], [t("requests"), 1]], rows);
}
function miniTable(head, kind, rows) {
  const max = Math.max(1, ...rows.map((r) => r.requests));
  const tb = el("table");
  tb.append(el("tr", {}, el("th", {}, head), el("th", { class: "num" }, t("requests")), el("th")));
  for (const r of rows) {
    const bar = el("div", { class: "bar" });
    bar.style.width = Math.round((100 * r.requests) / max) + "%";
    tb.append(el("tr", {}, el("td", {}, keyText(r.key, kind)),
      el("td", { class: "num" }, nf.format(r.requests)), el("td", { class: "barcell" }, bar)));
  }
  return tb;
}
function drawTop(services, users, groups) {
  const box = document.getElementById("top");
  if (!services.length) {
    box.replaceChildren(el("p", { class: "empty" }, t("noData")));
    return;
  }
  box.replaceChildren(...services.map((s, i) => el("div", {}, el("h3", {}, s.key),
    miniTable(t("users"), "user", users[i]), miniTable(t("groups"), "group", groups[i]))));
}
function drawRecent(lines) {
  const rows = lines.map((l) => {
    const when = new Date(l.ts).toLocaleString(lang === "ko" ? "ko-KR" : "en-US");
    const badge = el("span", { class: "badge " + (l.action || ""), title: l.action || "" },
      T[lang].short[l.action] || l.action || "");
    const act = el("span", {}, badge);
    if (Array.isArray(l.dlp) && l.dlp.length)
      act.append(" ", el("span", { class: "badge dlp" }, l.dlp.join(",")));
    const target = el("span", { title: (l.host || "") + (l.path || "") },
      (l.host || "") + (l.path || ""));
    return [when, l.user === null ? t("anon") : l.user, l.service || "–", act, l.rule || "–",
      l.status === null ? "–" : String(l.status), target];
  });
  table("recent", [[t("time")], [t("user")], [t("service")], [t("action")], [t("rule")],
    [t("status"), 1], [t("target")]], rows);
  const tds = document.querySelectorAll("#recent tr td:last-child");
  tds.forEach((td) => td.classList.add("target"));
}

function fillServiceFilter(services) {
  const sel = document.getElementById("f-service");
  const keep = sel.value;
  const known = new Set([...sel.options].map((o) => o.value));
  for (const s of services)
    if (!known.has(s.key)) sel.append(el("option", { value: s.key }, s.key));
  sel.value = keep;
}

async function refresh() {
  const status = document.getElementById("status");
  status.className = "";
  status.textContent = t("loading");
  const toMs = Date.now();
  const to = new Date(toMs).toISOString();
  const period = document.getElementById("period").value;
  const base = baseParams(to);
  const [by, unit] = bucketOf(period);
  const fromMs = toMs - { "1h": 36e5, "24h": 864e5, "7d": 7 * 864e5, "30d": 30 * 864e5 }[period];
  try {
    const [all, rules, recent] = await Promise.all([
      usage(base, { by: "service" }), usage(base, { by: "rule" }),
      api("api/recent", (() => { const p = new URLSearchParams(base); p.set("n", "50"); return p; })()),
    ]);
    drawSummary(all);
    const services = all.filter((r) => r.key !== null);
    fillServiceFilter(services);
    drawCaution(services);
    drawRules(rules);
    drawRecent(recent.lines);
    const top = services.slice(0, MAX_CHARTS);
    const tz = tzOffset();
    const [series, users, groups] = await Promise.all([
      Promise.all(top.map((s) => usage(base, { by, tz, service: s.key }))),
      Promise.all(top.map((s) => usage(base, { by: "user", service: s.key, limit: 5 }))),
      Promise.all(top.map((s) => usage(base, { by: "group", service: s.key, limit: 5 }))),
    ]);
    const charts = document.getElementById("charts");
    charts.replaceChildren(...top.map((s, i) =>
      drawChart(s.key, s.requests, series[i], fromMs, toMs, by, unit)));
    if (!top.length) charts.replaceChildren(el("p", { class: "empty" }, t("noData")));
    drawTop(top, users, groups);
    status.textContent = t("updated") + " " + new Date().toLocaleTimeString(lang === "ko" ? "ko-KR" : "en-US");
  } catch (e) {
    status.className = "err";
    status.textContent = t("failed") + ": " + e.message;
  }
}

function init() {
  document.querySelectorAll("[data-t]").forEach((e) => { e.textContent = t(e.dataset.t); });
  document.title = "aigate · " + t("title");
  drawLegend();
  document.getElementById("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    refresh();
  });
  document.getElementById("period").addEventListener("change", refresh);
  refresh();
  setInterval(refresh, 60e3);
}
document.addEventListener("DOMContentLoaded", init);
