"""giamsat: api."""
