"""WGS 84 helpers: local metric scales and an ellipsoidal distance (Vincenty, vectorised).

All angles are degrees, all distances metres. The engine measures short distances (fix to a
nearby boundary) in an affine frame centred on the fix, whose scale comes from the ellipsoid's
radii of curvature at the fix's latitude; that is exact to ~1e-4 relative within a few km. Long
distances (a circle's centre, a far boundary) use Vincenty's inverse formula (< 1 mm).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

A = 6378137.0  # WGS 84 semi-major axis, m
F = 1 / 298.257223563  # WGS 84 flattening
B = A * (1 - F)
E2 = F * (2 - F)  # first eccentricity squared
RAD = np.pi / 180.0

FloatArray = NDArray[np.float64]


def metres_per_degree(lat_deg: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Metres per degree of longitude and of latitude at `lat_deg` (WGS 84).

    Uses the prime-vertical radius N (east-west) and the meridional radius M (north-south).
    """
    phi = np.asarray(lat_deg, dtype=np.float64) * RAD
    s2 = np.sin(phi) ** 2
    w = np.sqrt(1.0 - E2 * s2)
    n = A / w
    m = A * (1.0 - E2) / (w * w * w)
    return n * np.cos(phi) * RAD, m * RAD


def vincenty(
    lon1: ArrayLike, lat1: ArrayLike, lon2: ArrayLike, lat2: ArrayLike, iterations: int = 30
) -> FloatArray:
    """Geodesic distance in metres between points on the WGS 84 ellipsoid (Vincenty 1975).

    Vectorised; accurate to < 1 mm for points that are not nearly antipodal (which never occurs
    within one country). Coincident points give 0.
    """
    lo1, la1, lo2, la2 = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (lon1, lat1, lon2, lat2))
    )
    big_l = (lo2 - lo1) * RAD
    u1 = np.arctan((1 - F) * np.tan(la1 * RAD))
    u2 = np.arctan((1 - F) * np.tan(la2 * RAD))
    su1, cu1, su2, cu2 = np.sin(u1), np.cos(u1), np.sin(u2), np.cos(u2)
    lam = big_l.copy()
    done = np.zeros(lam.shape, dtype=bool)  # converged: lam frozen, so each result is the same
    with np.errstate(invalid="ignore", divide="ignore"):  # whatever else is in the batch
        for _ in range(iterations):
            sl, cl = np.sin(lam), np.cos(lam)
            ss = np.hypot(cu2 * sl, cu1 * su2 - su1 * cu2 * cl)
            cs = su1 * su2 + cu1 * cu2 * cl
            sigma = np.arctan2(ss, cs)
            sa = np.where(ss > 0, cu1 * cu2 * sl / np.where(ss > 0, ss, 1), 0.0)
            c2a = 1 - sa * sa
            c2sm = np.where(c2a > 0, cs - 2 * su1 * su2 / np.where(c2a > 0, c2a, 1), 0.0)
            c = F / 16 * c2a * (4 + F * (4 - 3 * c2a))
            lam_new = big_l + (1 - c) * F * sa * (
                sigma + c * ss * (c2sm + c * cs * (-1 + 2 * c2sm * c2sm))
            )
            done |= np.abs(lam_new - lam) < 1e-12
            lam = np.where(done, lam, lam_new)
            if done.all():
                break
        u_sq = c2a * (A * A - B * B) / (B * B)
        ka = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
        kb = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
        ds = (
            kb
            * ss
            * (
                c2sm
                + kb
                / 4
                * (
                    cs * (-1 + 2 * c2sm * c2sm)
                    - kb / 6 * c2sm * (-3 + 4 * ss * ss) * (-3 + 4 * c2sm * c2sm)
                )
            )
        )
        dist = B * ka * (sigma - ds)
    return np.where(ss > 0, dist, 0.0)


def local_xy(
    lon: ArrayLike, lat: ArrayLike, lon0: ArrayLike, lat0: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Metres east and north of (lon0, lat0) in the affine frame tangent at lat0.

    Exact to ~1e-4 relative within a few km of the origin; lon/lat straight lines stay straight.
    """
    kx, ky = metres_per_degree(lat0)
    x = (np.asarray(lon, dtype=np.float64) - np.asarray(lon0, dtype=np.float64)) * kx
    y = (np.asarray(lat, dtype=np.float64) - np.asarray(lat0, dtype=np.float64)) * ky
    return x, y
