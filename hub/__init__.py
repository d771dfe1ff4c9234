"""Plumbing of the city operations hub: settings, the `hub` CLI, database, local infrastructure."""
