// The IOP billing flags as sentences (vIOP/web/static/js/billing-flags.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { hoursText, programToday, shortDayFlags, weekFlag, weekdayName } from "../../vIOP/web/static/js/billing-flags.js";

const WEEK = { week_start: "2026-01-05", week_end: "2026-01-11" }; // Monday to Sunday

test("hours are rounded up to a tenth, never down to nothing", () => {
  assert.equal(hoursText(180), "3 h");
  assert.equal(hoursText(210), "3.5 h");
  assert.equal(hoursText(30), "0.5 h");
  assert.equal(hoursText(1), "0.1 h");
  assert.equal(hoursText(0), "0 h");
  assert.equal(hoursText(-5), "0 h");
});

test("a week under 9 hours needs the missing hours by its last day while it lasts", () => {
  const short = { ...WEEK, minutes_missing: 180 };
  assert.equal(weekFlag(short, "2026-01-08", "en-US"), "needs 3 h more by Sunday");
  assert.equal(weekFlag(short, "2026-01-11", "en-US"), "needs 3 h more by Sunday");
  assert.equal(weekFlag(short, "2026-01-12", "en-US"), "3 h short of 9 h");
  assert.equal(weekFlag({ ...WEEK, minutes_missing: 0 }, "2026-01-08", "en-US"), null);
  const sundayToSaturday = { week_start: "2026-01-04", week_end: "2026-01-10", minutes_missing: 30 };
  assert.equal(weekFlag(sundayToSaturday, "2026-01-05", "en-US"), "needs 0.5 h more by Saturday");
});

test("days under 3 hours are listed for their client and week only, oldest first", () => {
  const days = [
    { subject: "cl_1", day: "2026-01-08", minutes_missing: 60 },
    { subject: "cl_1", day: "2026-01-07", minutes_missing: 30 },
    { subject: "cl_1", day: "2026-01-05", minutes_missing: 0 },
    { subject: "cl_2", day: "2026-01-07", minutes_missing: 90 },
    { subject: "cl_1", day: "2026-01-12", minutes_missing: 120 },
  ];
  assert.deepEqual(shortDayFlags(days, "cl_1", WEEK, "en-US"), ["Wednesday 0.5 h short of 3 h", "Thursday 1 h short of 3 h"]);
  assert.deepEqual(shortDayFlags(days, "cl_3", WEEK, "en-US"), []);
});

test("today and weekdays are calendar days in the program's time zone", () => {
  assert.equal(weekdayName("2026-03-08", "en-US"), "Sunday");
  // 03:30 UTC on a Monday is still Sunday evening in New York.
  const now = new Date("2026-03-09T03:30:00Z");
  assert.equal(programToday("America/New_York", now), "2026-03-08");
  assert.equal(programToday("UTC", now), "2026-03-09");
});
