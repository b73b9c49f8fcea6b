"""Quick replies, buyer history and the analytics summary."""

urlpatterns: list = []
