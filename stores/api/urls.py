from django.urls import path

from stores.api import team_views, views

urlpatterns = [
    path("stores/", views.StoreListView.as_view(), name="store-list"),
    path("error-codes/", views.ErrorCodeListView.as_view(), name="error-code-list"),
    # Team management (团队管理): through stores.services only.
    path("team/members/", team_views.MemberListView.as_view(), name="team-member-list"),
    path("team/members/<str:username>/", team_views.MemberDetailView.as_view(), name="team-member-detail"),
    path("team/members/<str:username>/roles/", team_views.MemberRolesView.as_view(), name="team-member-roles"),
    path("team/members/<str:username>/roles/revoke/", team_views.MemberRolesRevokeView.as_view(),
         name="team-member-roles-revoke"),
    path("team/roles/", team_views.RoleListView.as_view(), name="team-role-list"),
    path("team/roles/<uuid:role_id>/", team_views.RoleDetailView.as_view(), name="team-role-detail"),
]
