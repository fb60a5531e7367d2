"""The database schema (versioned SQL migrations) and how to connect and migrate."""

from schema.db import (
    UnsafeTimescale,
    apply_retention,
    check_timescale,
    connect,
    has_timescale,
    migrate,
)

__all__ = ["UnsafeTimescale", "apply_retention", "check_timescale", "connect", "has_timescale",
           "migrate"]
