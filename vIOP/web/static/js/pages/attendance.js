// Attendance for clinicians: per-session rosters with join/leave times, weekly hours with the IOP
// under-threshold flags (days under 3 hours, weeks under 9 hours), and the same report as CSV.

import * as api from "../api.js";
import { $, announce, el, formatTime, setBusy, showScreen } from "../ui.js";

const page = { token: null };

function filters() {
  const form = $("#filters");
  return {
    roomId: form.room_id.value.trim() || undefined,
    from: form.from.value || undefined,
    to: form.to.value || undefined,
  };
}

function hours(minutes) {
  return (Number(minutes || 0) / 60).toFixed(1);
}

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

function renderWeekly(rows) {
  $("#weekly-body").replaceChildren(
    ...rows.map((row) => {
      const flags = [];
      if (row.week_under_threshold ?? row.under_weekly_threshold) flags.push("week under 9 h");
      const shortDays = row.days_under_threshold ?? row.short_days ?? 0;
      if (shortDays) flags.push(`${shortDays} day(s) under 3 h`);
      return el(
        "tr",
        { class: flags.length ? "under" : "" },
        el("td", {}, row.display_name ?? row.client ?? ""),
        el("td", {}, row.week_start ?? row.week ?? ""),
        el("td", {}, hours(row.minutes)),
        el("td", {}, String(row.days_at_threshold ?? row.full_days ?? "")),
        el("td", {}, flags.join(", ") || "none"),
      );
    }),
  );
  $("#weekly-empty").hidden = rows.length > 0;
}

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
              ...roster.map((r) =>
                el("tr", {}, el("td", {}, r.display_name ?? r.client ?? ""), el("td", {}, formatTime(r.joined_at)), el("td", {}, formatTime(r.left_at) || "still in"), el("td", {}, String(Math.round(r.minutes ?? 0)))),
              ),
            ),
          ),
        ),
      );
    }),
  );
  $("#sessions-empty").hidden = sessions.length > 0;
}

async function load(event) {
  event?.preventDefault();
  $("#attendance-error").hidden = true;
  const submit = $("#filters-submit");
  setBusy(submit, true);
  try {
    const report = await api.attendance(page.token, filters());
    renderWeekly(report.weekly ?? report.weeks ?? []);
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
    const blob = await api.attendanceCsv(page.token, filters());
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: "attendance.csv", hidden: true });
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
  $("#sign-out-link").addEventListener("click", async (event) => {
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
