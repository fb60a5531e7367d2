"""Geofence engine: zones, sentence policies, vectorised decisions and transitions.

A pure library (numpy + shapely) except `geofence.store`, the only module doing I/O. Imports
nothing else of giamsat. Contract §2 is the specification.
"""
