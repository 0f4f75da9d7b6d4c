"""Use cases: login, sessions, roles, audit, start-up. Knows nothing of HTTP (no aiohttp.web)."""
