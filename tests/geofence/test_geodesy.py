"""Geodesy: Vincenty against published and GeographicLib values; the local frame's error."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.geodesy import local_xy, metres_per_degree, vincenty

from .helpers import geodesic_m


def test_vincenty_reproduces_the_published_flinders_peak_line():
    # Vincenty (1975), test line: Flinders Peak -> Buninyong, 54 972.271 m
    lon1, lat1 = 144 + 25 / 60 + 29.52440 / 3600, -(37 + 57 / 60 + 3.72030 / 3600)
    lon2, lat2 = 143 + 55 / 60 + 35.38390 / 3600, -(37 + 39 / 60 + 10.15610 / 3600)
    assert abs(float(vincenty(lon1, lat1, lon2, lat2)) - 54972.271) < 0.001


@settings(max_examples=60, deadline=None)
@given(
    st.floats(102, 110), st.floats(8, 24),
    st.floats(-200_000, 200_000), st.floats(-200_000, 200_000),
)  # fmt: skip
def test_vincenty_matches_geographiclib_across_vietnam(lon, lat, east, north):
    kx, ky = metres_per_degree(lat)
    lon2, lat2 = lon + east / float(kx), lat + north / float(ky)
    assert abs(float(vincenty(lon, lat, lon2, lat2)) - geodesic_m(lon, lat, lon2, lat2)) < 0.001


def test_coincident_points_are_zero_apart():
    assert float(vincenty(105.8, 21.0, 105.8, 21.0)) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.floats(102, 110), st.floats(8, 24), st.floats(0, 2 * np.pi), st.floats(1, 3000))
def test_local_frame_is_within_1e4_of_the_geodesic_up_to_3_km(lon, lat, bearing, dist):
    # the near path measures fix-to-edge distances (< 3 km) in the frame tangent at the fix
    kx, ky = metres_per_degree(lat)
    lon2 = lon + dist * np.sin(bearing) / float(kx)
    lat2 = lat + dist * np.cos(bearing) / float(ky)
    x, y = local_xy(lon2, lat2, lon, lat)
    ref = geodesic_m(lon, lat, lon2, lat2)
    assert abs(float(np.hypot(x, y)) - ref) <= 1e-4 * ref + 1e-6
