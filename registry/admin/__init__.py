"""Administration: tenants, users, members and robots, shared by the CLI and the /api/v1 API."""
