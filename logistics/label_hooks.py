"""Wires the after-sales core's events to label issuing: an approved return gets its label in the background.

The core publishes STATE_CHANGED after its transaction commits (aftersales.events), so the task is
enqueued only for a change that really happened; the task re-checks eligibility itself.
"""

from __future__ import annotations

from aftersales import events
from aftersales.states import State
from logistics import label_tasks  # imported here so a worker that loads the hooks also knows the task


def on_state_changed(*, ticket_id, after, **_event) -> None:
    """Return approved (awaiting the buyer's parcel): time to make the prepaid label, if any.

    Only markets whose policy offers prepaid labels get a task: every other market's approvals would
    fill the queue with tasks that can only say "not eligible" (the task still re-checks everything).
    """
    if after == State.AWAITING_RETURN and _market_offers_labels(ticket_id):
        label_tasks.issue_return_label_task.delay(ticket_id)


def _market_offers_labels(ticket_id: int) -> bool:
    """One query (a batch approving 1,000 returns runs this 1,000 times after its commit)."""
    from aftersales.models import AfterSalesRequest

    return AfterSalesRequest.objects.unscoped().filter(
        pk=ticket_id, store__market__policy__prepaid_return_label=True).exists()


def connect() -> None:
    """Subscribe once; calling it again (tests, a second ready()) changes nothing."""
    events.subscribe(events.STATE_CHANGED, on_state_changed)
