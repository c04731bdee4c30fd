// @ts-check
// Attendance for clinicians: per-session rosters with join/leave times (and the track title of a room opened
// for a track occurrence), weekly hours with the IOP under-threshold flags (days under 3 hours, weeks under
// 9 hours, each with the hours missing) in the program's time zone and week, and the same report as CSV.

import { Role } from "../protocol.js";
import * as api from "../api.js";
import { programToday, shortDayFlags, weekFlag } from "../billing-flags.js";
import { $, announce, el, formatTime, setBusy, showScreen } from "../ui.js";

/** @type {{token: string | null, loads: number}} */
const page = { token: null, loads: 0 };

function filters() {
  const form = $("#filters");
  return {
    roomId: form.room_id.value.trim() || undefined,
    from: form.from.value || undefined,
    to: form.to.value || undefined,
    tz: form.tz.value.trim() || undefined,
    weekStart: form.week_start.value || undefined,
  };
}

// The browser's own zone as the default program time zone (a clinician usually works where the program is).
function browserTimeZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

// A roster line's name: hosts have none in the ledger (their subject is a user id), and a crypto-shredded
// client has none any more.
/** @typedef {Record<string, any>} Row a row of GET /api/v1/attendance (JSON) */

/** @param {Row} line */
function rosterName(line) {
  if (line.display_name) return line.display_name;
  return line.role === Role.HOST ? "Clinician" : "Name erased";
}

/** @param {number | null | undefined} minutes */
function hours(minutes) {
  return (Number(minutes || 0) / 60).toFixed(1);
}

/** @param {unknown} error */
function showError(error) {
  if (error instanceof api.ApiError && error.status === 401) {
    api.forgetAccessToken();
    showScreen("signed-out");
    return;
  }
  const box = $("#attendance-error");
  box.textContent = api.describeError(error);
  box.hidden = false;
  announce(box.textContent, { assertive: true });
}

// weeks: {subject, display_name, week_start, week_end, minutes, days_attended, days_with_3_hours,
// under_9_hours, under_3_qualifying_days, minutes_missing}; days: {subject, day, minutes, under_3_hours,
// minutes_missing}. ``today`` is the program's day, to tell a week still running from one that is over.
/**
 * @param {Row[]} weeks
 * @param {Row[]} days
 * @param {string} today
 */
function renderWeekly(weeks, days, today) {
  $("#weekly-body").replaceChildren(
    ...weeks.map((row) => {
      /** @type {string[]} */
      const flags = [];
      const week = { week_start: row.week_start, week_end: row.week_end, minutes_missing: Number(row.minutes_missing ?? 0) };
      const weekShort = weekFlag(week, today);
      if (weekShort) flags.push(weekShort);
      if (row.under_3_qualifying_days) flags.push("fewer than 3 days of 3 h");
      flags.push(...shortDayFlags(days.map((d) => ({ subject: d.subject, day: d.day, minutes_missing: Number(d.minutes_missing ?? 0) })), row.subject, week));
      return el(
        "tr",
        { class: flags.length ? "under" : undefined, dataset: { subject: row.subject ?? "", minutesMissing: String(week.minutes_missing) } },
        el("td", {}, rosterName(row)),
        el("td", {}, row.week_start ?? ""),
        el("td", {}, hours(row.minutes)),
        el("td", {}, `${row.days_with_3_hours ?? 0} of ${row.days_attended ?? 0}`),
        el("td", { class: "flags" }, flags.join("; ") || "none"),
      );
    }),
  );
  $("#weekly-empty").hidden = weeks.length > 0;
}

// Times in the program's time zone (the report's), as billing counts days.
/**
 * @param {Row[]} sessions
 * @param {string} timeZone
 */
function renderSessions(sessions, timeZone) {
  $("#sessions").replaceChildren(
    ...sessions.map((session, index) => {
      const titleId = `session-${index}`;
      const roster = session.roster ?? session.intervals ?? [];
      return el(
        "section",
        { "aria-labelledby": titleId },
        el("h3", { id: titleId }, `${session.track_title ?? session.room_id ?? "Session"} · ${formatTime(session.occurrence_start ?? session.started_at, timeZone)}`),
        el(
          "div",
          { class: "table-wrap" },
          el(
            "table",
            { "aria-labelledby": titleId },
            el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Joined"), el("th", { scope: "col" }, "Left"), el("th", { scope: "col" }, "Minutes"))),
            el(
              "tbody",
              {},
              ...roster.map((/** @type {Row} */ r) =>
                el("tr", { dataset: { subject: r.subject ?? "" } }, el("td", { class: "who" }, rosterName(r)), el("td", { class: "joined" }, formatTime(r.joined_at, timeZone)), el("td", { class: "left" }, formatTime(r.left_at, timeZone) || "still in"), el("td", {}, String(Math.round(r.minutes ?? 0)))),
              ),
            ),
          ),
        ),
      );
    }),
  );
  $("#sessions-empty").hidden = sessions.length > 0;
}

/** @param {Event} [event] */
async function load(event) {
  event?.preventDefault();
  $("#attendance-error").hidden = true;
  const submit = $("#filters-submit");
  setBusy(submit, true);
  const mine = ++page.loads; // only the latest request renders (the first load may answer after a second)
  try {
    const report = await api.attendance(page.token, filters());
    if (mine !== page.loads) return;
    let today;
    try {
      today = programToday(report.time_zone ?? "UTC");
    } catch {
      today = programToday("UTC");
    }
    renderWeekly(report.weeks ?? [], report.days ?? [], today);
    renderSessions(report.sessions ?? [], report.time_zone ?? "UTC");
    // What the tables show, for tests and assistive tech alike to know which report is on screen.
    Object.assign($("#weekly-body").dataset, { timeZone: report.time_zone ?? "", weekStart: report.week_start ?? "" });
    announce("Attendance loaded.");
  } catch (error) {
    if (mine === page.loads) showError(error);
  } finally {
    if (mine === page.loads) setBusy(submit, false);
  }
}

async function downloadCsv() {
  const button = $("#download-csv");
  setBusy(button, true);
  try {
    const table = $("#csv-table").value;
    const blob = await api.attendanceCsv(page.token, { ...filters(), table });
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: `attendance-${table}.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    announce("Attendance CSV downloaded.");
  } catch (error) {
    showError(error);
  } finally {
    setBusy(button, false);
  }
}

function main() {
  $("#sign-out-link").addEventListener("click", async (/** @type {Event} */ event) => {
    event.preventDefault();
    await api.logout();
    location.assign("/");
  });
  page.token = api.accessToken();
  if (!page.token) {
    showScreen("signed-out");
    return;
  }
  $("#filters").tz.value = browserTimeZone();
  $("#filters").addEventListener("submit", load);
  $("#download-csv").addEventListener("click", downloadCsv);
  showScreen("attendance");
  load();
}

main();
