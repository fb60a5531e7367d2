"""The registry: units, supervisees, zones, permits, devices and who wears them.

One home for every write and every read of these, for the API, the importer and the decide
stage: one writer per entity, one loader of zones and permits with one revocation rule
(``registry.permits``), one change watcher (``registry.changes``). Zones and permits are
versioned (schema/migrations/0050_registry_versions.sql): a change is a new version with its
effective time and author, so what was decided under a version can be shown as it was.

Below the API and the composition root; above ``geofence`` (its pure types) and ``schema``.
"""

from registry.changes import bump, changes, fingerprints, stamp
from registry.common import ChangeRefused
from registry.fence import load_fence, reload_supervisee
from registry.permits import PermitVersion, load_permits, permits_in_force
from registry.supervisees import load_supervisees
from registry.zones import ZoneVersion, load_zones, zones_in_force

__all__ = [
    "ChangeRefused",
    "PermitVersion",
    "ZoneVersion",
    "bump",
    "changes",
    "fingerprints",
    "load_fence",
    "load_permits",
    "load_supervisees",
    "load_zones",
    "permits_in_force",
    "reload_supervisee",
    "stamp",
    "zones_in_force",
]
