"""The database schema (versioned SQL migrations) and how to connect and migrate."""

from schema.db import connect, has_timescale, migrate

__all__ = ["connect", "has_timescale", "migrate"]
