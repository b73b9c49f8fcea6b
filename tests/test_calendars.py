"""Business-hours calendars: the arithmetic (against a brute-force minute stepper), validation with codes,
MarketPolicy.deadline_after, the seeded calendars and the admin."""

from __future__ import annotations

import datetime as dt
import importlib
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stores import calendars
from stores.calendars import Calendar, CalendarError, add_business_hours, business_seconds_between
from stores.models import BUSINESS_HOURS_KINDS, BusinessCalendar, Market, MarketPolicy

UTC = dt.UTC
LONDON = ZoneInfo("Europe/London")
BANGKOK = ZoneInfo("Asia/Bangkok")
OFFICE = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
LUNCH = {day: [["09:00", "12:00"], ["13:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def cal(working_hours=None, holidays=(), zone="Europe/London") -> Calendar:
    return Calendar.build(zone, OFFICE if working_hours is None else working_hours, list(holidays))


def at(zone, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone)


# --- the arithmetic ---------------------------------------------------------------------------------------------
# 2026-11-23 is a Monday.
@pytest.mark.parametrize(("start", "hours", "expected"), [
    ((2026, 11, 23, 10, 0), 3, (2026, 11, 23, 13, 0)),     # within a day
    ((2026, 11, 23, 10, 0), 8, (2026, 11, 23, 18, 0)),     # ends exactly at closing: closing, not next morning
    ((2026, 11, 23, 10, 0), 9, (2026, 11, 24, 10, 0)),     # overnight to the next opening
    ((2026, 11, 23, 7, 30), 1, (2026, 11, 23, 10, 0)),     # before opening: counts from 09:00
    ((2026, 11, 23, 20, 0), 1, (2026, 11, 24, 10, 0)),     # after closing: counts from the next morning
    ((2026, 11, 27, 17, 0), 2, (2026, 11, 30, 10, 0)),     # Friday → Monday: the weekend is skipped
    ((2026, 11, 28, 12, 0), 1, (2026, 11, 30, 10, 0)),     # starting on a Saturday
    ((2026, 11, 23, 10, 0), 45, (2026, 11, 30, 10, 0)),    # exactly one working week
    ((2026, 11, 23, 10, 0), Decimal("1.5"), (2026, 11, 23, 11, 30)),
    ((2026, 11, 23, 10, 0), 0.25, (2026, 11, 23, 10, 15)),
])
def test_office_hours(start, hours, expected):
    assert add_business_hours(at(LONDON, *start), hours, cal()) == at(LONDON, *expected)


def test_zero_hours_is_the_next_opening_or_the_start_itself():
    assert add_business_hours(at(LONDON, 2026, 11, 23, 10), 0, cal()) == at(LONDON, 2026, 11, 23, 10)
    assert add_business_hours(at(LONDON, 2026, 11, 28, 10), 0, cal()) == at(LONDON, 2026, 11, 30, 9)
    assert add_business_hours(at(LONDON, 2026, 11, 23, 18), 0, cal()) == at(LONDON, 2026, 11, 24, 9)


def test_lunch_break_is_not_counted():
    lunch = cal(LUNCH)
    assert add_business_hours(at(LONDON, 2026, 11, 23, 11), 2, lunch) == at(LONDON, 2026, 11, 23, 14)
    assert add_business_hours(at(LONDON, 2026, 11, 23, 12, 30), 1, lunch) == at(LONDON, 2026, 11, 23, 14)
    assert add_business_hours(at(LONDON, 2026, 11, 23, 11), 1, lunch) == at(LONDON, 2026, 11, 23, 12)
    assert business_seconds_between(at(LONDON, 2026, 11, 23, 9), at(LONDON, 2026, 11, 23, 18), lunch) == 8 * 3600


def test_overnight_shift_across_midnight_and_24_00():
    night = cal({day: [["00:00", "06:00"], ["22:00", "24:00"]] for day in calendars.WEEKDAYS})
    assert add_business_hours(at(LONDON, 2026, 11, 23, 23), 3, night) == at(LONDON, 2026, 11, 24, 2)
    assert add_business_hours(at(LONDON, 2026, 11, 23, 12), 2, night) == at(LONDON, 2026, 11, 24, 0)
    assert business_seconds_between(at(LONDON, 2026, 11, 23, 21), at(LONDON, 2026, 11, 24, 7), night) == 8 * 3600


def test_holidays_are_closed_all_day():
    christmas = cal(holidays=["2026-12-25", {"date": "2026-12-28", "name": "Boxing Day (substitute day)"}])
    # Thursday 24 Dec 17:00 + 2 h: one hour on Thursday, Friday 25th and Monday 28th closed → Tuesday 10:00.
    assert add_business_hours(at(LONDON, 2026, 12, 24, 17), 2, christmas) == at(LONDON, 2026, 12, 29, 10)
    # Starting on the holiday itself counts from the next working day's opening.
    assert add_business_hours(at(LONDON, 2026, 12, 25, 11), 1, christmas) == at(LONDON, 2026, 12, 29, 10)
    week = business_seconds_between(at(LONDON, 2026, 12, 21), at(LONDON, 2027, 1, 4), christmas)
    assert week == (10 - 2) * 9 * 3600


def test_dst_office_hours_stay_on_the_local_clock():
    # Spring forward on Sunday 29 March 2026 (01:00 GMT → 02:00 BST), fall back on Sunday 25 October.
    spring = add_business_hours(at(LONDON, 2026, 3, 27, 17), 2, cal())
    assert spring == at(LONDON, 2026, 3, 30, 10) and spring == dt.datetime(2026, 3, 30, 9, tzinfo=UTC)
    autumn = add_business_hours(at(LONDON, 2026, 10, 23, 17), 2, cal())
    assert autumn == at(LONDON, 2026, 10, 26, 10) and autumn == dt.datetime(2026, 10, 26, 10, tzinfo=UTC)
    # A week across either change still holds exactly 45 working hours.
    for monday in (at(LONDON, 2026, 3, 23), at(LONDON, 2026, 10, 19)):
        assert business_seconds_between(monday, monday + dt.timedelta(days=7), cal()) == 45 * 3600


def test_dst_night_hours_count_real_time():
    night = cal({"sun": [["00:00", "03:00"]]})
    # The clocks skip 01:00–02:00 in March (2 real hours) and repeat it in October (4 real hours).
    assert business_seconds_between(at(LONDON, 2026, 3, 29), at(LONDON, 2026, 3, 30), night) == 2 * 3600
    assert business_seconds_between(at(LONDON, 2026, 10, 25), at(LONDON, 2026, 10, 26), night) == 4 * 3600
    assert add_business_hours(at(LONDON, 2026, 3, 29), 2, night) == dt.datetime(2026, 3, 29, 2, tzinfo=UTC)
    assert add_business_hours(at(LONDON, 2026, 10, 25), 4, night) == dt.datetime(2026, 10, 25, 3, tzinfo=UTC)
    # A range ending inside the repeated hour opens again when the clock goes back (the clock shows 01:00–01:30).
    short = cal({"sun": [["00:00", "01:30"]]})
    assert business_seconds_between(at(LONDON, 2026, 10, 25), at(LONDON, 2026, 10, 26), short) == 2 * 3600


def test_result_is_utc_and_zone_independent_of_the_start():
    bangkok = cal(zone="Asia/Bangkok")
    start = at(BANGKOK, 2026, 11, 23, 17)
    result = add_business_hours(start, 2, bangkok)
    assert result.tzinfo is UTC and result == at(BANGKOK, 2026, 11, 24, 10)
    assert add_business_hours(start.astimezone(LONDON), 2, bangkok) == result


def test_between_is_signed_and_zero_on_closed_time():
    a, b = at(LONDON, 2026, 11, 23, 10), at(LONDON, 2026, 11, 24, 10)
    assert business_seconds_between(a, b, cal()) == 9 * 3600
    assert business_seconds_between(b, a, cal()) == -9 * 3600
    assert business_seconds_between(at(LONDON, 2026, 11, 28), at(LONDON, 2026, 11, 30), cal()) == 0


def test_large_hours_skip_weeks_without_walking_days(monkeypatch):
    walked = []
    original = calendars._consume_day
    monkeypatch.setattr(calendars, "_consume_day", lambda *args: walked.append(args[1]) or original(*args))
    start = at(LONDON, 2026, 11, 23, 10)
    result = add_business_hours(start, 5000, cal(holidays=["2027-12-24", "2028-01-03"]))
    assert business_seconds_between(start, result, cal(holidays=["2027-12-24", "2028-01-03"])) == 5000 * 3600
    # ≈ 111 weeks; days are walked only at the start, the end and beside each of the ~4 DST changes.
    assert len(walked) < 80, len(walked)


def test_model_instance_is_accepted_as_calendar(db):
    calendar = BusinessCalendar.objects.get(market__code="UK")
    assert add_business_hours(at(LONDON, 2026, 11, 27, 17), 2, calendar) == at(LONDON, 2026, 11, 30, 10)


# --- refusals ------------------------------------------------------------------------------------------------------
def test_no_working_time_is_refused_not_looped():
    with pytest.raises(CalendarError) as exc:
        Calendar.build("Europe/London", {}, [])
    assert exc.value.code == "ERR_SLA_004"
    empty = Calendar("Europe/London", ((),) * 7)  # built by hand, bypassing validation
    with pytest.raises(CalendarError) as exc:
        add_business_hours(at(LONDON, 2026, 11, 23), 1, empty)
    assert exc.value.code == "ERR_SLA_004"


def test_search_is_bounded_to_three_years():
    mondays_only = {"mon": [["09:00", "10:00"]]}
    first = dt.date(2026, 11, 23)
    closed = [str(first + dt.timedelta(weeks=i)) for i in range(200)]  # every Monday for almost four years
    calendar = cal(mondays_only, closed)
    with pytest.raises(CalendarError) as exc:
        add_business_hours(at(LONDON, 2026, 11, 23), 1, calendar)
    assert exc.value.code == "ERR_SLA_004"
    with pytest.raises(CalendarError):
        add_business_hours(at(LONDON, 2026, 11, 23), 200, cal(mondays_only))  # 200 Mondays ≈ 3.8 years


def test_bad_arguments():
    with pytest.raises(ValueError, match="aware"):
        add_business_hours(dt.datetime(2026, 11, 23, 10), 1, cal())  # naive on purpose
    with pytest.raises(ValueError, match="negative"):
        add_business_hours(at(LONDON, 2026, 11, 23, 10), -1, cal())
    with pytest.raises(TypeError):
        add_business_hours(at(LONDON, 2026, 11, 23, 10), "1", cal())


@pytest.mark.parametrize(("working_hours", "fragment"), [
    ([["09:00", "18:00"]], "object"),
    ({"monday": [["09:00", "18:00"]]}, "monday"),
    ({"mon": "09:00-18:00"}, "list"),
    ({"mon": [["09:00"]]}, "pair"),
    ({"mon": [["9:00", "18:00"]]}, "9:00"),
    ({"mon": [["24:00", "24:00"]]}, "24:00"),
    ({"mon": [["09:00", "24:30"]]}, "24:30"),
    ({"mon": [["18:00", "09:00"]]}, "before"),
    ({"mon": [["09:00", "13:00"], ["12:00", "18:00"]]}, "overlap"),
])
def test_working_hours_errors(working_hours, fragment):
    with pytest.raises(CalendarError) as exc:
        calendars.parse_working_hours(working_hours)
    assert exc.value.code == "ERR_SLA_003" and exc.value.field == "working_hours"
    assert fragment in str(exc.value.message)


def test_touching_ranges_are_joined_and_missing_days_closed():
    week = calendars.parse_working_hours({"tue": [["13:00", "24:00"], ["09:00", "13:00"]], "sat": []})
    assert week[1] == ((9 * 60, 24 * 60),) and week[0] == () and week[5] == ()


@pytest.mark.parametrize("holidays", [
    "2026-12-25", ["2026-02-30"], ["25/12/2026"], ["20261225"], [{"day": "2026-12-25"}],
    [{"date": "2026-12-25", "name": 7}], ["2026-12-25", {"date": "2026-12-25", "name": "again"}],
])
def test_holiday_errors(holidays):
    with pytest.raises(CalendarError) as exc:
        calendars.parse_holidays(holidays)
    assert exc.value.code == "ERR_SLA_005" and exc.value.field == "holidays"


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", "../etc/passwd", None, "/etc/localtime"])
def test_time_zone_errors(zone):
    with pytest.raises(CalendarError) as exc:
        calendars.zone_for(zone)
    assert exc.value.code == "ERR_SLA_006"


# --- against a brute-force minute stepper -------------------------------------------------------------------
ZONES = ["UTC", "Europe/London", "America/Los_Angeles", "Asia/Bangkok", "Australia/Lord_Howe", "Asia/Kolkata"]


def brute_working(calendar: Calendar, moment: dt.datetime) -> bool:
    """The definition, applied to one minute: its local wall time is in a range of a non-holiday weekday."""
    local = moment.astimezone(calendar.zone)
    minute = local.hour * 60 + local.minute
    return local.date() not in calendar.holidays and any(
        start <= minute < end for start, end in calendar.week[local.weekday()])


def brute_add(calendar: Calendar, start: dt.datetime, minutes: int) -> dt.datetime:
    moment, counted = start, 0
    while counted < minutes:
        counted += brute_working(calendar, moment)
        moment += dt.timedelta(minutes=1)
    return moment


@st.composite
def calendars_(draw) -> Calendar:
    zone = draw(st.sampled_from(ZONES))
    spec = {}
    for day in calendars.WEEKDAYS:
        edges = sorted(draw(st.lists(st.integers(0, 24 * 60), max_size=6, unique=True)))
        pairs = [[f"{a // 60:02d}:{a % 60:02d}", f"{b // 60:02d}:{b % 60:02d}"]
                 for a, b in zip(edges[::2], edges[1::2], strict=False)]
        if pairs:
            spec[day] = pairs
    if not spec:
        spec["wed"] = [["01:30", "02:30"]]  # a range inside most DST changes
    holidays = draw(st.lists(st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31)), max_size=25, unique=True))
    return Calendar.build(zone, spec, [str(d) for d in holidays])


# Half the starts fall within two weeks before an offset change of one of the zones (US, EU, Lord Howe).
DST_CHANGES = [dt.datetime(2026, m, d, tzinfo=UTC) for m, d in ((3, 8), (3, 29), (4, 5), (10, 4), (10, 25), (11, 1))]
starts = st.one_of(
    st.integers(0, 365 * 24 * 60).map(lambda m: dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=m)),
    st.tuples(st.sampled_from(DST_CHANGES), st.integers(0, 14 * 24 * 60)).map(
        lambda p: p[0] - dt.timedelta(minutes=p[1])),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calendar=calendars_(), start=starts, data=st.data())
def test_add_matches_brute_force(calendar, start, data):
    weekly_hours = calendar.week_us // calendars.US_PER_HOUR
    hours = data.draw(st.integers(1, max(1, 12 * weekly_hours)), label="hours")  # up to ~12 weeks of work
    result = add_business_hours(start, hours, calendar)
    assert result == brute_add(calendar, start, hours * 60)
    assert business_seconds_between(start, result, calendar) == hours * 3600


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calendar=calendars_(), start=starts, span=st.integers(0, 40 * 24 * 60))
def test_between_matches_brute_force(calendar, start, span):
    end = start + dt.timedelta(minutes=span)
    expected = sum(brute_working(calendar, start + dt.timedelta(minutes=m)) for m in range(span))
    assert business_seconds_between(start, end, calendar) == expected * 60


@settings(max_examples=150, deadline=None)
@given(calendar=calendars_(), start=starts, minutes=st.integers(1, 2000 * 60))
def test_add_and_between_agree_for_large_hours(calendar, start, minutes):
    hours = Decimal(minutes) / 60
    try:
        result = add_business_hours(start, hours, calendar)
    except CalendarError:
        assert minutes * 60 > business_seconds_between(start, start + calendars.HORIZON, calendar)
        return
    assert abs(business_seconds_between(start, result, calendar) - minutes * 60) < 1e-3
    assert result - dt.timedelta(minutes=1) < start or brute_working(calendar, result - dt.timedelta(seconds=1))


# --- the models ------------------------------------------------------------------------------------------------
def codes(exc: ValidationError) -> dict[str, list[str]]:
    return {name: [e.code for e in errs] for name, errs in exc.error_dict.items()}


@pytest.mark.django_db
class TestBusinessCalendarModel:
    def market(self):
        market = Market.objects.get(code="UK")
        BusinessCalendar.objects.filter(market=market).delete()
        return market

    def test_time_zone_defaults_to_the_markets(self):
        calendar = BusinessCalendar(market=self.market())
        calendar.full_clean()
        calendar.save()
        assert calendar.time_zone == "Europe/London"
        assert calendar.working_hours == OFFICE and calendar.holidays == []

    @pytest.mark.parametrize(("fields", "expected"), [
        ({"working_hours": {"mon": [["18:00", "09:00"]]}}, {"working_hours": ["ERR_SLA_003"]}),
        ({"working_hours": {}}, {"working_hours": ["ERR_SLA_004"]}),
        ({"working_hours": {"sat": []}}, {"working_hours": ["ERR_SLA_004"]}),
        ({"holidays": ["2026-13-01"]}, {"holidays": ["ERR_SLA_005"]}),
        ({"time_zone": "Europe/Londres"}, {"time_zone": ["ERR_SLA_006"]}),
        ({"time_zone": "Nowhere", "holidays": "x", "working_hours": []},
         {"time_zone": ["ERR_SLA_006"], "holidays": ["ERR_SLA_005"], "working_hours": ["ERR_SLA_003"]}),
    ])
    def test_clean_reports_coded_errors(self, fields, expected):
        calendar = BusinessCalendar(market=self.market(), **fields)
        with pytest.raises(ValidationError) as exc:
            calendar.full_clean()
        assert codes(exc.value) == expected

    def test_as_calendar_follows_edits(self):
        calendar = BusinessCalendar.objects.get(market__code="UK")
        first = calendar.as_calendar()
        assert calendar.as_calendar() is first
        calendar.working_hours = {"mon": [["10:00", "11:00"]]}
        assert calendar.as_calendar().week_us == calendars.US_PER_HOUR


@pytest.mark.django_db
class TestMarketPolicy:
    def policy(self, code="UK", kinds=()):
        policy = MarketPolicy.objects.select_related("market__business_calendar").get(market__code=code)
        policy.business_hours_kinds = list(kinds)
        return policy

    def test_kinds_mirror_the_sla_kinds(self):
        from aftersales.models import SlaKind

        assert set(BUSINESS_HOURS_KINDS) | {"platform"} == set(SlaKind.values)
        for value, label in BUSINESS_HOURS_KINDS.items():
            assert str(label) == str(SlaKind(value).label)

    @pytest.mark.parametrize("kinds", [["platform"], ["first_response", "platform"], ["nope"], "first_response",
                                       [1]])
    def test_platform_and_unknown_kinds_are_refused(self, kinds):
        policy = self.policy(kinds=kinds)
        with pytest.raises(ValidationError) as exc:
            policy.full_clean()
        assert codes(exc.value) == {"business_hours_kinds": ["ERR_SLA_007"]}

    def test_valid_kinds_are_kept_once(self):
        policy = self.policy(kinds=["auto_approve", "first_response", "auto_approve"])
        policy.full_clean()
        assert policy.business_hours_kinds == ["auto_approve", "first_response"]

    def test_deadline_after_counts_business_hours_only_for_listed_kinds(self, django_assert_num_queries):
        policy = self.policy(kinds=["first_response"])
        friday = at(LONDON, 2026, 11, 27, 17)
        with django_assert_num_queries(0):  # the calendar came with select_related
            assert policy.deadline_after(friday, 24, "first_response") == at(LONDON, 2026, 12, 2, 14)
            assert policy.deadline_after(friday, 48, "auto_approve") == friday + dt.timedelta(hours=48)
            assert policy.deadline_after(friday, 24, "platform") == friday + dt.timedelta(hours=24)

    def test_deadline_after_as_seeded_is_wall_clock(self, django_assert_num_queries):
        policy = MarketPolicy.objects.get(market__code="UK")
        friday = at(LONDON, 2026, 11, 27, 17)
        with django_assert_num_queries(0):  # the calendar is not even looked at
            for kind in BUSINESS_HOURS_KINDS:
                assert policy.deadline_after(friday, 24, kind) == friday + dt.timedelta(hours=24)

    def test_deadline_after_without_a_calendar_is_wall_clock(self):
        BusinessCalendar.objects.filter(market__code="UK").delete()
        policy = self.policy(kinds=["first_response"])
        friday = at(LONDON, 2026, 11, 27, 17)
        assert policy.business_calendar() is None
        assert policy.deadline_after(friday, 24, "first_response") == friday + dt.timedelta(hours=24)


# --- the seed ----------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_every_market_has_a_valid_calendar_and_none_counts_business_hours():
    calendars_by_market = {c.market.code: c for c in BusinessCalendar.objects.select_related("market")}
    assert len(calendars_by_market) == Market.objects.count() == 11
    for code, calendar in calendars_by_market.items():
        calendar.full_clean()
        assert calendar.time_zone == calendar.market.time_zone
        assert calendar.as_calendar().week_us == 45 * calendars.US_PER_HOUR, code
        assert all(dt.date.fromisoformat(h["date"]).year == 2026 for h in calendar.holidays)
    assert sorted(calendars_by_market["SA"].working_hours) == ["mon", "sun", "thu", "tue", "wed"]
    assert list(MarketPolicy.objects.values_list("business_hours_kinds", flat=True)) == [[]] * 11
    # Seeded holidays are working days (a holiday on a closed day would be pointless).
    for calendar in calendars_by_market.values():
        week = calendar.as_calendar()
        assert all(week.day_us(dt.date.fromisoformat(h["date"])) == 0 for h in calendar.holidays)
        assert all(week.weekday_us[dt.date.fromisoformat(h["date"]).weekday()] for h in calendar.holidays)


@pytest.mark.django_db
def test_seed_is_idempotent():
    from django.apps import apps

    seed = importlib.import_module("stores.migrations.0010_seed_business_calendars").seed
    seed(apps, None)
    assert BusinessCalendar.objects.count() == 11


# --- admin ---------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_calendar_pages(admin_client):
    calendar = BusinessCalendar.objects.get(market__code="UK")
    assert admin_client.get(reverse("admin:stores_businesscalendar_changelist")).status_code == 200
    url = reverse("admin:stores_businesscalendar_change", args=[calendar.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"time_zone": "Europe/London", "working_hours": '{"mon": [["18:00", "09:00"]]}',
                                       "holidays": "[]", "source": ""})
    assert response.status_code == 200 and "does not start before it ends" in response.content.decode()
    response = admin_client.post(url, {"time_zone": "Europe/London", "working_hours": '{"mon": [["08:00", "16:00"]]}',
                                       "holidays": '["2026-12-25"]', "source": "ops"})
    assert response.status_code == 302
    calendar.refresh_from_db()
    assert calendar.working_hours == {"mon": [["08:00", "16:00"]]} and calendar.holidays == ["2026-12-25"]


@pytest.mark.django_db
def test_admin_policy_switches_kinds_on(admin_client):
    policy = MarketPolicy.objects.get(market__code="UK")
    url = reverse("admin:stores_marketpolicy_change", args=[policy.pk])
    page = admin_client.get(url).content.decode()
    assert 'value="first_response"' in page and 'value="platform"' not in page
    response = admin_client.post(url, {"commission_rate": str(policy.commission_rate),
                                       "return_shipping_payer": policy.return_shipping_payer,
                                       "business_hours_kinds": ["first_response", "replacement_response"],
                                       "source": policy.source})
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert policy.business_hours_kinds == ["first_response", "replacement_response"]
    assert admin_client.get(reverse("admin:stores_marketpolicy_changelist")).status_code == 200
