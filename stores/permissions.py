"""StorePerm: the per-store permissions a role can grant (guardian object permissions on Store)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class StorePerm(models.TextChoices):
    # Values are the Permission codenames on stores.Store; they are unique in the project.
    VIEW = "view_store", _("View store")
    HANDLE_AFTERSALES = "handle_aftersales", _("After-sales handling (售后处理)")
    REFUND = "refund", _("Refund")
    MANAGE_LOGISTICS = "manage_logistics", _("Manage logistics")
    MANAGE_QUICK_REPLIES = "manage_quick_replies", _("Manage quick replies")
    VIEW_ANALYTICS = "view_analytics", _("View analytics")
    MANAGE_TEAM = "manage_team", _("Manage team")


# Permissions declared on Store.Meta (view_store is Django's default one).
CUSTOM_STORE_PERMISSIONS = [(p.value, str(p.label)) for p in StorePerm if p is not StorePerm.VIEW]

# The error raised when a visible store lacks the permission: its hint names the role setting.
PERM_ERROR_CODES = {
    StorePerm.HANDLE_AFTERSALES: "ERR_PERM_001",
    StorePerm.REFUND: "ERR_PERM_002",
    StorePerm.MANAGE_LOGISTICS: "ERR_PERM_003",
    StorePerm.MANAGE_QUICK_REPLIES: "ERR_PERM_004",
    StorePerm.VIEW_ANALYTICS: "ERR_PERM_005",
    StorePerm.MANAGE_TEAM: "ERR_PERM_006",
}

# Role templates created for every agency (名称, permissions).
ROLE_TEMPLATES = {
    "store-manager": (_("Store manager"), [p.value for p in StorePerm]),
    "aftersales-agent": (
        _("After-sales agent"),
        [StorePerm.VIEW, StorePerm.HANDLE_AFTERSALES, StorePerm.REFUND, StorePerm.MANAGE_LOGISTICS,
         StorePerm.MANAGE_QUICK_REPLIES],
    ),
    "logistics-clerk": (_("Logistics clerk"), [StorePerm.VIEW, StorePerm.MANAGE_LOGISTICS]),
    "analyst": (_("Analyst (view only)"), [StorePerm.VIEW, StorePerm.VIEW_ANALYTICS]),
}
