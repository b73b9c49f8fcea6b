"""TikTok Shop connector (Partner API v202309+): request signing today; client, sync and webhooks follow."""
