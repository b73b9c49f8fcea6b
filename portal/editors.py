"""Routes of the quick-reply (售后话术库) and auto-rule (自动规则) editors; the views live in editors_*.py."""

from django.urls import path

from portal import editors_replies, editors_rules

urlpatterns: list = [
    path("replies/", editors_replies.replies_page, name="replies"),
    path("replies/new/", editors_replies.reply_new, name="reply_new"),
    path("replies/<uuid:reply_id>/", editors_replies.reply_edit, name="reply_edit"),
    path("replies/<uuid:reply_id>/delete/", editors_replies.reply_delete, name="reply_delete"),
    path("rules/", editors_rules.rules_page, name="rules"),
    path("rules/new/", editors_rules.rule_new, name="rule_new"),
    path("rules/<uuid:rule_id>/", editors_rules.rule_edit, name="rule_edit"),
    path("rules/<uuid:rule_id>/delete/", editors_rules.rule_delete, name="rule_delete"),
]
