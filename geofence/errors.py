"""Errors raised by the geofence library."""


class ZoneError(ValueError):
    """Invalid zone, geometry or schedule input.

    `path` is a JSON path into the document that was parsed (e.g.
    `$.zones[0].geometry.coordinates[0][3]`); `message` says what is wrong in words an operator
    can act on.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
