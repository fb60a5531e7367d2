"""Settings shared by every stage: read once at the entrypoint and passed down."""

from config.settings import Settings

__all__ = ["Settings"]
