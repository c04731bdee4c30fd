// @ts-check
// The IOP billing flags of GET /api/v1/attendance as sentences: a week under 9 hours "needs 3 h more by
// Sunday" while it lasts (and is "3 h short of 9 h" once over), a day under 3 hours is "0.5 h short of 3 h".
// The server counts (minutes_missing, week_end, in the program's time zone); this only words it.

/**
 * Hours, rounded up to a tenth so a shortfall never reads as less than it is ("0.1 h", "3 h", "3.5 h").
 * @param {number} minutes
 */
export function hoursText(minutes) {
  const tenths = Math.ceil(Math.max(0, minutes) / 6 - 1e-9);
  return `${tenths % 10 === 0 ? String(tenths / 10) : (tenths / 10).toFixed(1)} h`;
}

/**
 * The weekday of a day given as YYYY-MM-DD (a calendar day: no time zone moves it).
 * @param {string} day
 * @param {string | undefined} locale
 */
export function weekdayName(day, locale) {
  return new Date(`${day}T12:00:00Z`).toLocaleDateString(locale, { weekday: "long", timeZone: "UTC" });
}

/**
 * Today as YYYY-MM-DD in the program's time zone.
 * @param {string} timeZone
 * @param {Date} [now]
 */
export function programToday(timeZone, now = new Date()) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(now);
  /** @param {string} type */
  const part = (type) => parts.find((p) => p.type === type)?.value ?? "";
  return `${part("year")}-${part("month")}-${part("day")}`;
}

/**
 * @typedef {object} WeekRow
 * @property {string} week_start
 * @property {string} week_end
 * @property {number} minutes_missing
 */

/**
 * The flag of a week under 9 hours, or null: what it still needs while it lasts, what it lacked after.
 * @param {WeekRow} week
 * @param {string} today YYYY-MM-DD in the program's time zone
 * @param {string} [locale]
 */
export function weekFlag(week, today, locale) {
  if (!(week.minutes_missing > 0)) return null;
  const hours = hoursText(week.minutes_missing);
  if (today <= week.week_end) return `needs ${hours} more by ${weekdayName(week.week_end, locale)}`;
  return `${hours} short of 9 h`;
}

/**
 * @typedef {object} DayRow
 * @property {string} subject
 * @property {string} day
 * @property {number} minutes_missing
 */

/**
 * The flags of the days under 3 hours in one client's week, oldest first.
 * @param {DayRow[]} days
 * @param {string} subject
 * @param {WeekRow} week
 * @param {string} [locale]
 */
export function shortDayFlags(days, subject, week, locale) {
  return days
    .filter((d) => d.subject === subject && d.day >= week.week_start && d.day <= week.week_end && d.minutes_missing > 0)
    .sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : 0))
    .map((d) => `${weekdayName(d.day, locale)} ${hoursText(d.minutes_missing)} short of 3 h`);
}
