"""Background tasks of the tenancy kernel. Thin: ids in, one service call."""

from celery import shared_task

from stores.services import record_heartbeat


@shared_task(name="stores.heartbeat", ignore_result=True)
def heartbeat(name: str = "worker") -> None:
    record_heartbeat(name)
