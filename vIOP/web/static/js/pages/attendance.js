// @ts-check
// Attendance for clinicians: per-session rosters with join/leave times, weekly hours with the IOP
// under-threshold flags (days under 3 hours, weeks under 9 hours), and the same report as CSV.

import { Role } from "../protocol.js";
import * as api from "../api.js";
import { $, announce, el, formatTime, setBusy, showScreen } from "../ui.js";

/** @type {{token: string | null}} */
const page = { token: null };

function filters() {
  const form = $("#filters");
  return {
    roomId: form.room_id.value.trim() || undefined,
    from: form.from.value || undefined,
    to: form.to.value || undefined,
  };
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

/**
 * @param {Row[]} days
 * @param {Row} row
 */
function shortDaysIn(days, row) {
  const start = new Date(`${row.week_start}T00:00:00Z`).getTime();
  const end = start + 7 * 86400 * 1000;
  return days.filter((d) => {
    const at = new Date(`${d.day}T00:00:00Z`).getTime();
    return d.subject === row.subject && d.under_3_hours && at >= start && at < end;
  }).length;
}

// weeks: {subject, display_name, week_start, minutes, days_attended, days_with_3_hours, under_9_hours,
// under_3_qualifying_days}; days: {subject, day, minutes, under_3_hours}.
/**
 * @param {Row[]} weeks
 * @param {Row[]} days
 */
function renderWeekly(weeks, days) {
  $("#weekly-body").replaceChildren(
    ...weeks.map((row) => {
      /** @type {string[]} */
      const flags = [];
      if (row.under_9_hours) flags.push("week under 9 h");
      if (row.under_3_qualifying_days) flags.push("fewer than 3 days of 3 h");
      const shortDays = shortDaysIn(days, row);
      if (shortDays) flags.push(`${shortDays} day(s) under 3 h`);
      return el(
        "tr",
        { class: flags.length ? "under" : undefined },
        el("td", {}, rosterName(row)),
        el("td", {}, row.week_start ?? ""),
        el("td", {}, hours(row.minutes)),
        el("td", {}, `${row.days_with_3_hours ?? 0} of ${row.days_attended ?? 0}`),
        el("td", {}, flags.join(", ") || "none"),
      );
    }),
  );
  $("#weekly-empty").hidden = weeks.length > 0;
}

/** @param {Row[]} sessions */
function renderSessions(sessions) {
  $("#sessions").replaceChildren(
    ...sessions.map((session, index) => {
      const titleId = `session-${index}`;
      const roster = session.roster ?? session.intervals ?? [];
      return el(
        "section",
        { "aria-labelledby": titleId },
        el("h3", { id: titleId }, `${session.title ?? session.room_id ?? "Session"} · ${formatTime(session.started_at)}`),
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
                el("tr", { dataset: { subject: r.subject ?? "" } }, el("td", { class: "who" }, rosterName(r)), el("td", { class: "joined" }, formatTime(r.joined_at)), el("td", { class: "left" }, formatTime(r.left_at) || "still in"), el("td", {}, String(Math.round(r.minutes ?? 0)))),
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
  try {
    const report = await api.attendance(page.token, filters());
    renderWeekly(report.weeks ?? [], report.days ?? []);
    renderSessions(report.sessions ?? []);
    announce("Attendance loaded.");
  } catch (error) {
    showError(error);
  } finally {
    setBusy(submit, false);
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
  $("#filters").addEventListener("submit", load);
  $("#download-csv").addEventListener("click", downloadCsv);
  showScreen("attendance");
  load();
}

main();
