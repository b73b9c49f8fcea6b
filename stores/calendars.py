"""Business-hours calendars for SLA deadlines (Zammad-style). Pure functions: no database access.

A calendar is a weekly pattern of working ranges in local wall time (``"HH:MM"`` pairs, several per day for a
lunch break, ``"24:00"`` may end a day), an IANA time zone, and holidays (local dates closed all day). The
model ``stores.models.BusinessCalendar`` stores it as JSON; ``Calendar.build`` validates that JSON and gives the
small frozen value the functions below work on (they accept the model too, through its ``as_calendar()``).

**What counts.** An instant is working time when its local wall time in the calendar's zone — date and time of
day — lies in a working range of that weekday and the date is not a holiday. Daylight saving time follows from
that rule: the UTC timeline is cut at the zone's offset changes into pieces of constant offset, and inside a
piece local wall time is UTC shifted by the offset, so the working time of a piece is the weekly pattern
shifted back by it. So a range 00:00–03:00 lasts 2 real hours on the spring-forward night and 4 on the
fall-back night, and a range that ends inside the repeated hour opens again when the clock goes back (the clock
shows a working time). Ordinary office hours (nothing between 01:00 and 03:00) are simply the same wall-clock
times on every day.

**Cost.** Inside a piece whole weeks are counted arithmetically (the weekly total less the holidays in them,
from prefix sums); days are walked only at the edges (the start, the end, either side of an offset change).
Offset changes are found once per zone and year (a daily probe, then bisection to the second) and cached.
Assumption: a zone changes its offset at most once within 24 hours, true of every zone in use.

**Bounds.** A calendar with no working time is refused (``ERR_SLA_004``); so is a deadline that would lie more
than three years after its start (holidays closing every working day), instead of searching for ever.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils.translation import gettext_lazy as _

from stores import errors
from stores.errors import AppError, ErrorCode

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A deadline further than this from its start is refused: SLA deadlines are hours or days, never years.
HORIZON = dt.timedelta(days=3 * 366)
UTC = dt.UTC
DAY = dt.timedelta(days=1)
MICROSECOND = dt.timedelta(microseconds=1)
US_PER_MINUTE = 60_000_000
US_PER_HOUR = 3_600_000_000
DAY_END = 24 * 60
_TIME = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

Week = tuple[tuple[tuple[int, int], ...], ...]  # per weekday (Monday first): sorted (start, end) minutes


class CalendarError(AppError):
    """A calendar that cannot be used, with its catalogue code and the model field at fault."""

    def __init__(self, error: ErrorCode, detail: Any = None, *, field: str = ""):
        self.field = field
        self.message = detail if detail is not None else error.message  # may be lazy: rendered late
        super().__init__(error, detail=None if detail is None else str(detail),
                         fields={field: [str(self.message)]} if field else None)


# --- parsing the model's JSON ---------------------------------------------------------------------------------
def zone_for(name: Any) -> ZoneInfo:
    """The IANA zone called ``name`` (``ERR_SLA_006`` when there is none)."""
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise CalendarError(errors.ERR_SLA_006, _("“%(zone)s” is not a known IANA time zone.") % {"zone": name},
                        field="time_zone")


def _minutes(value: Any, day: str, *, end: bool) -> int:
    if isinstance(value, str):
        if end and value == "24:00":
            return DAY_END
        if _TIME.fullmatch(value):
            hours, minutes = value.split(":")
            return int(hours) * 60 + int(minutes)
    raise CalendarError(errors.ERR_SLA_003, _("%(day)s: “%(value)s” is not a time of day as HH:MM (00:00–23:59; "
                                              "24:00 only as an end).") % {"day": day, "value": value},
                        field="working_hours")


def parse_working_hours(spec: Any) -> Week:
    """``{"mon": [["09:00", "12:00"], ["13:00", "18:00"]], …}`` → minutes per weekday, sorted, touching ranges
    joined. A missing weekday or an empty list is a closed day. Raises ``CalendarError`` (``ERR_SLA_003``)."""
    def fail(message):
        raise CalendarError(errors.ERR_SLA_003, message, field="working_hours")

    if not isinstance(spec, Mapping):
        fail(_("Working hours must be an object with the weekdays mon … sun as keys."))
    unknown = sorted(str(key) for key in spec if key not in WEEKDAYS)
    if unknown:
        fail(_("Unknown weekday: %(days)s (use mon, tue, wed, thu, fri, sat, sun).") % {"days": ", ".join(unknown)})
    week = []
    for day in WEEKDAYS:
        ranges = spec.get(day)
        if ranges is None:
            ranges = []
        if not isinstance(ranges, list | tuple):
            fail(_("%(day)s: give a list of [start, end] ranges.") % {"day": day})
        parsed = []
        for pair in ranges:
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                fail(_("%(day)s: each range is a pair [\"HH:MM\", \"HH:MM\"].") % {"day": day})
            start, end = _minutes(pair[0], day, end=False), _minutes(pair[1], day, end=True)
            if start >= end:
                fail(_("%(day)s: the range %(start)s–%(end)s does not start before it ends.")
                     % {"day": day, "start": pair[0], "end": pair[1]})
            parsed.append((start, end))
        merged: list[tuple[int, int]] = []
        for start, end in sorted(parsed):
            if merged and start < merged[-1][1]:
                fail(_("%(day)s: the ranges overlap.") % {"day": day})
            if merged and start == merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        week.append(tuple(merged))
    return tuple(week)


def parse_holidays(spec: Any) -> dict[dt.date, str]:
    """``["2026-12-25", {"date": "2026-12-26", "name": "Boxing Day"}]`` → {date: name}, each date once.
    Raises ``CalendarError`` (``ERR_SLA_005``)."""
    def fail(message):
        raise CalendarError(errors.ERR_SLA_005, message, field="holidays")

    if spec is None:
        return {}
    if not isinstance(spec, list | tuple):
        fail(_("Holidays must be a list."))
    found: dict[dt.date, str] = {}
    for item in spec:
        name: Any = ""
        raw = item
        if isinstance(item, Mapping):
            if set(item) - {"date", "name"}:
                fail(_("A holiday has only “date” and “name”."))
            raw, name = item.get("date"), item.get("name") or ""
            if not isinstance(name, str):
                fail(_("A holiday's name must be text."))
        day = None
        if isinstance(raw, str) and _DATE.fullmatch(raw):
            try:
                day = dt.date.fromisoformat(raw)
            except ValueError:
                day = None
        if day is None:
            fail(_("“%(value)s” is not a date as YYYY-MM-DD.") % {"value": raw})
        if day in found:
            fail(_("%(date)s is listed twice.") % {"date": raw})
        found[day] = name
    return found


# --- the calendar value ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calendar:
    """A validated calendar. Build it with ``Calendar.build`` (from JSON) or directly from parsed values."""

    time_zone: str
    week: Week
    holidays: frozenset[dt.date] = frozenset()

    @classmethod
    def build(cls, time_zone: Any, working_hours: Any, holidays: Any = ()) -> Calendar:
        """Validate the model's values (``CalendarError`` with the code and field at fault)."""
        zone_for(time_zone)
        calendar = cls(time_zone, parse_working_hours(working_hours), frozenset(parse_holidays(holidays)))
        if not calendar.week_us:
            raise CalendarError(errors.ERR_SLA_004, _("No weekday has working hours."), field="working_hours")
        return calendar

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @cached_property
    def weekday_us(self) -> tuple[int, ...]:
        return tuple(sum(end - start for start, end in day) * US_PER_MINUTE for day in self.week)

    @cached_property
    def week_us(self) -> int:
        """Working microseconds in a week without holidays (wall time)."""
        return sum(self.weekday_us)

    @cached_property
    def _closed(self) -> tuple[list[dt.date], list[int]]:
        """Holidays that close working time, sorted, with prefix sums of the working time they close."""
        days = sorted(d for d in self.holidays if self.weekday_us[d.weekday()])
        sums = [0]
        for day in days:
            sums.append(sums[-1] + self.weekday_us[day.weekday()])
        return days, sums

    def holiday_us(self, first: dt.date, stop: dt.date) -> int:
        """Working time closed by holidays on the dates [first, stop)."""
        days, sums = self._closed
        return sums[bisect.bisect_left(days, stop)] - sums[bisect.bisect_left(days, first)]

    def ranges_on(self, day: dt.date) -> tuple[tuple[int, int], ...]:
        return () if day in self.holidays else self.week[day.weekday()]

    def day_us(self, day: dt.date) -> int:
        return 0 if day in self.holidays else self.weekday_us[day.weekday()]

    def as_calendar(self) -> Calendar:
        return self


class CalendarLike(Protocol):
    def as_calendar(self) -> Calendar: ...


def as_calendar(calendar: Calendar | CalendarLike) -> Calendar:
    """The calendar value of a ``Calendar`` or of anything with ``as_calendar()`` (the model)."""
    if isinstance(calendar, Calendar):
        return calendar
    return calendar.as_calendar()


def calendar_key(time_zone: str, working_hours: Any, holidays: Any) -> str:
    """A cache key for the model's values (JSON is not hashable)."""
    return json.dumps([time_zone, working_hours, holidays], sort_keys=True, default=str)


# --- the zone's offset changes ----------------------------------------------------------------------------------
def _offset(zone: ZoneInfo, moment: dt.datetime) -> dt.timedelta:
    return moment.astimezone(zone).utcoffset() or dt.timedelta(0)


@lru_cache(maxsize=1024)
def _transitions(time_zone: str, year: int) -> tuple[dt.datetime, ...]:
    """The instants (UTC) in (Jan 1, next Jan 1] of ``year`` from which the zone's UTC offset is a new one."""
    if not 1 <= year < 9999:
        return ()
    zone = ZoneInfo(time_zone)
    moment, end = dt.datetime(year, 1, 1, tzinfo=UTC), dt.datetime(year + 1, 1, 1, tzinfo=UTC)
    before = _offset(zone, moment)
    found = []
    while moment < end:
        after = _offset(zone, moment + DAY)
        if after != before:
            low, high = int(moment.timestamp()), int((moment + DAY).timestamp())
            while high - low > 1:  # offset(low) == before, offset(high) != before
                middle = (low + high) // 2
                if _offset(zone, dt.datetime.fromtimestamp(middle, UTC)) == before:
                    low = middle
                else:
                    high = middle
            found.append(dt.datetime.fromtimestamp(high, UTC))
            before = after
        moment += DAY
    return tuple(found)


def _next_transition(time_zone: str, moment: dt.datetime, limit: dt.datetime) -> dt.datetime | None:
    """The first offset change after ``moment`` and before ``limit``, if any."""
    for year in range(moment.year, limit.year + 1):
        changes = _transitions(time_zone, year)
        i = bisect.bisect_right(changes, moment)
        if i < len(changes):
            return changes[i] if changes[i] < limit else None
    return None


def _pieces(calendar: Calendar, start: dt.datetime,
            limit: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime, dt.timedelta]]:
    """[start, limit) (UTC) cut into pieces of constant UTC offset: (piece start, piece end, offset)."""
    while start < limit:
        offset = _offset(calendar.zone, start)
        end = _next_transition(calendar.time_zone, start, limit) or limit
        yield start, end, offset
        start = end


# --- wall-time arithmetic inside one piece -----------------------------------------------------------------------
def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


def _open(calendar: Calendar, day: dt.date, low: dt.datetime,
          high: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """The day's working ranges (naive wall time) clipped to [low, high), non-empty ones only."""
    base = _midnight(day)
    for start, end in calendar.ranges_on(day):
        a = max(base + dt.timedelta(minutes=start), low)
        b = min(base + dt.timedelta(minutes=end), high)
        if a < b:
            yield a, b


def _consume_day(calendar: Calendar, day: dt.date, low: dt.datetime, high: dt.datetime,
                 left: int) -> tuple[dt.datetime | None, int]:
    for a, b in _open(calendar, day, low, high):
        available = (b - a) // MICROSECOND
        if left <= available:
            return a + dt.timedelta(microseconds=left), 0
        left -= available
    return None, left


def _wall_advance(calendar: Calendar, low: dt.datetime, high: dt.datetime,
                  left: int) -> tuple[dt.datetime | None, int]:
    """Use ``left`` µs of working time in the wall-time span [low, high): where it is used up, or what is left."""
    day = low.date()
    if low > _midnight(day):  # the partial first day
        point, left = _consume_day(calendar, day, low, high, left)
        if point is not None:
            return point, 0
        day += DAY
    while _midnight(day) < high:
        if left > calendar.week_us:  # whole weeks, arithmetically; stop while more than a week's work remains
            weeks = min((left - 1) // calendar.week_us, (high.date() - day).days // 7)
            if weeks > 0:
                stop = day + dt.timedelta(days=7 * weeks)
                left -= weeks * calendar.week_us - calendar.holiday_us(day, stop)
                day = stop
                continue
        point, left = _consume_day(calendar, day, _midnight(day), high, left)
        if point is not None:
            return point, 0
        day += DAY
    return None, left


def _wall_total(calendar: Calendar, low: dt.datetime, high: dt.datetime) -> int:
    """Working µs in the wall-time span [low, high)."""
    if high <= low:
        return 0
    total, day = 0, low.date()
    if low > _midnight(day):
        total += sum((b - a) // MICROSECOND for a, b in _open(calendar, day, low, high))
        day += DAY
    whole_until = high.date()  # days [day, whole_until) lie entirely inside the span
    if day < whole_until:
        weeks = (whole_until - day).days // 7
        stop = day + dt.timedelta(days=7 * weeks)
        total += weeks * calendar.week_us - calendar.holiday_us(day, stop)
        day = stop
        while day < whole_until:
            total += calendar.day_us(day)
            day += DAY
    if day == high.date():
        total += sum((b - a) // MICROSECOND for a, b in _open(calendar, day, max(low, _midnight(day)), high))
    return total


# --- the public functions ----------------------------------------------------------------------------------------
def _utc(moment: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return moment.astimezone(UTC)


def _hours_us(hours: int | float | Decimal) -> int:
    if isinstance(hours, bool) or not isinstance(hours, int | float | Decimal):
        raise TypeError("hours must be a number")
    if isinstance(hours, int):
        us = hours * US_PER_HOUR
    else:
        exact = Decimal(str(hours)) if isinstance(hours, float) else hours
        if not exact.is_finite():
            raise ValueError("hours must be finite")
        us = round(exact * US_PER_HOUR)
    if us < 0:
        raise ValueError("hours must not be negative")
    return us


def _wall(moment: dt.datetime, offset: dt.timedelta) -> dt.datetime:
    return (moment + offset).replace(tzinfo=None)


def add_business_hours(start: dt.datetime, hours: int | float | Decimal,
                       calendar: Calendar | CalendarLike) -> dt.datetime:
    """The moment (UTC) at which ``hours`` of working time have passed since ``start``.

    A start outside working hours counts from the next opening (so 0 hours gives the next opening, or ``start``
    itself inside working hours). Work that ends exactly at a closing time gives that closing time.
    Raises ``CalendarError`` (``ERR_SLA_004``) when the calendar has no working time or the moment would lie
    more than three years ahead.
    """
    cal = as_calendar(calendar)
    moment, left = _utc(start, "start"), _hours_us(hours)
    if not cal.week_us:
        raise CalendarError(errors.ERR_SLA_004, _("No weekday has working hours."), field="working_hours")
    for low, high, offset in _pieces(cal, moment, moment + HORIZON):
        point, left = _wall_advance(cal, _wall(low, offset), _wall(high, offset), left)
        if point is not None:
            return (point - offset).replace(tzinfo=UTC)
    raise CalendarError(errors.ERR_SLA_004,
                        _("%(hours)s working hours from %(start)s would end more than three years later; the "
                          "holidays leave too little working time.") % {"hours": hours, "start": start.isoformat()},
                        field="holidays")


def business_seconds_between(a: dt.datetime, b: dt.datetime, calendar: Calendar | CalendarLike) -> float:
    """Working seconds from ``a`` to ``b`` (negative when ``b`` is before ``a``)."""
    cal = as_calendar(calendar)
    low, high = _utc(a, "a"), _utc(b, "b")
    if high < low:
        return -business_seconds_between(b, a, cal)
    total = sum(_wall_total(cal, _wall(p_low, offset), _wall(p_high, offset))
                for p_low, p_high, offset in _pieces(cal, low, high))
    return total / 1_000_000


def business_hours_between(a: dt.datetime, b: dt.datetime, calendar: Calendar | CalendarLike) -> float:
    return business_seconds_between(a, b, calendar) / 3600
