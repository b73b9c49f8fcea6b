"""Alert notifications (e-mail), sent by a task enqueued after the alerts' transaction commits.

Who hears of an alert: the request's assignee when one is set and may still see the store, else the
agency's owners. One message per person per run lists all their new alerts (a sweep that misses 300
deadlines sends a digest, not 300 mails). Each alert is claimed under a row lock and stamped
``notified_at`` in the transaction that sends, so redelivered or racing tasks send nothing twice unless the
process dies between handing the mail to the server and committing (at least once, almost always once).
People without an e-mail address are skipped; the alert stays visible in the portal either way.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from aftersales.models import Alert
from stores.models import Membership
from stores.permissions import StorePerm
from stores.services import actor_for_user, has_store_perm

log = logging.getLogger(__name__)
MAX_LINES = 200  # a digest lists at most this many alerts, then says how many more


def deliver(alert_ids: list[int]) -> int:
    """Send the not-yet-notified alerts among ``alert_ids``; returns how many were stamped."""
    with transaction.atomic():
        alerts = list(Alert.objects.unscoped().filter(pk__in=alert_ids, notified_at__isnull=True)
                      .select_related("ticket__store", "ticket__assignee")
                      .select_for_update(skip_locked=True, of=("self",)).order_by("pk"))
        if not alerts:
            return 0
        by_person: dict[int, list[Alert]] = defaultdict(list)
        owners = _owners({a.agency_id for a in alerts})
        users = {u.pk: u for ids in owners.values() for u in ids}
        sees: dict[tuple[int, int], bool] = {}  # (assignee, store): looked up once, not once per alert
        for alert in alerts:
            assignee = alert.ticket.assignee
            key = (assignee.pk, alert.ticket.store_id) if assignee is not None else None
            if key is not None and key not in sees:
                sees[key] = _may_see(assignee, alert)
            if key is not None and sees[key]:
                users[assignee.pk] = assignee
                by_person[assignee.pk].append(alert)
            else:
                for owner in owners.get(alert.agency_id, []):
                    by_person[owner.pk].append(alert)
        messages = [_message(users[pk], items) for pk, items in sorted(by_person.items()) if users[pk].email]
        if messages:
            with get_connection() as mail:
                mail.send_messages(messages)
        Alert.objects.unscoped().filter(pk__in=[a.pk for a in alerts]).update(notified_at=timezone.now())
    log.info("notified %d alert(s) in %d message(s)", len(alerts), len(messages))
    return len(alerts)


def _may_see(user, alert: Alert) -> bool:
    """The assignee may have lost the store (or left the agency) since the assignment."""
    actor = actor_for_user(user) if user.is_active else None
    return actor is not None and has_store_perm(actor, alert.ticket.store, StorePerm.VIEW)


def _owners(agency_ids: set[int]) -> dict[int, list]:
    found: dict[int, list] = defaultdict(list)
    user_model = get_user_model()
    members = list(Membership.objects.unscoped().filter(agency_id__in=agency_ids, kind=Membership.Kind.OWNER,
                                                        user__is_active=True).values_list("agency_id", "user_id"))
    people = user_model.objects.in_bulk([uid for _a, uid in members])
    for agency_id, user_id in members:
        found[agency_id].append(people[user_id])
    return found


def _message(user, alerts: list[Alert]) -> EmailMessage:
    with translation.override(settings.LANGUAGE_CODE):
        subject = ngettext("%(count)d after-sales alert", "%(count)d after-sales alerts",
                           len(alerts)) % {"count": len(alerts)}
        lines = [_line(alert) for alert in alerts[:MAX_LINES]]
        if len(alerts) > MAX_LINES:
            lines.append(_("… and %(count)d more in the portal.") % {"count": len(alerts) - MAX_LINES})
    return EmailMessage(subject=subject, body="\n".join(lines), to=[user.email])


def _line(alert: Alert) -> str:
    ticket = alert.ticket
    code = f" · {alert.error_code}" if alert.error_code else ""
    which = ticket.return_id or ticket.order_id
    return f"[{ticket.store.name}] {alert.get_kind_display()} · {which}{code}: {alert.message}"
