"""giamsat: giamsat."""
