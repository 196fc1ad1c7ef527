"""Transverse and longitudinal impact parameters (d0, z0) of a charged track, from an exact helix in a solenoid.

Conventions (all arrays broadcast together; lengths in mm, momenta in GeV, field in tesla):

* The track starts at its true production vertex ``(x0, y0, z0)`` with momentum ``(px, py, pz)`` and charge ``q``
  (units of e) in a uniform field ``B`` along +z. Curvature ``k = 0.2998e-3 * q * B`` GeV/mm, radius
  ``R = pT / |k|``, circle centre ``c = (x0 + py/k, y0 - px/k)``.
* ``d0 = sign(q) * (|c| - R)`` is the signed distance of closest approach to the beam line (z axis); for
  ``B -> 0`` it becomes the straight-line value ``(x0*py - y0*px) / pT``.
* ``z0 = z0_vertex + s * pz / pT`` with ``s`` the signed transverse arc length from the vertex to the point of
  closest approach (negative when that point lies behind the vertex); for ``B -> 0``
  ``s -> -(x0*px + y0*py) / pT``.
* Neutral particles (``q == 0``) get ``d0 = z0 = 0``.
"""

from __future__ import annotations

import numpy as np

CURVATURE_CONSTANT = 0.299792458e-3  # GeV / (mm * T * e)


def straight_line_impact(x0, y0, z0, px, py, pz):
    """(d0, z0) in mm of a straight line through (x0, y0, z0) along (px, py, pz): the B -> 0 limit."""
    pt = np.hypot(px, py)
    d0 = (x0 * py - y0 * px) / pt
    s = -(x0 * px + y0 * py) / pt
    return d0, z0 + s * pz / pt


def helix_impact(x0, y0, z0, px, py, pz, q, b_field: float):
    """(d0, z0) in mm of charged tracks through an exact helix in ``b_field`` tesla; 0 for neutral particles.

    Shapes: any broadcastable arrays; returns two float64 arrays of the broadcast shape.
    """
    x0, y0, z0, px, py, pz, q = (np.asarray(a, dtype=np.float64) for a in (x0, y0, z0, px, py, pz, q))
    charged = q != 0
    if b_field == 0:
        d0, zz = straight_line_impact(x0, y0, z0, px, py, pz)
        return np.where(charged, d0, 0.0), np.where(charged, zz, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):  # pT = 0 tracks give NaN (outside any acceptance)
        return _helix(x0, y0, z0, px, py, pz, q, charged, b_field)


def _helix(x0, y0, z0, px, py, pz, q, charged, b_field):
    k = CURVATURE_CONSTANT * np.where(charged, q, 1.0) * b_field
    pt = np.hypot(px, py)
    radius = pt / np.abs(k)
    cx, cy = x0 + py / k, y0 - px / k
    dist = np.hypot(cx, cy)
    # |c| - R without cancellation: (|c|^2 - R^2) / (|c| + R), |c|^2 - R^2 = 2 (x0 py - y0 px) / k + r0^2.
    gap = (2.0 * (x0 * py - y0 * px) / k + x0 * x0 + y0 * y0) / (dist + radius)
    d0 = np.sign(k) * gap
    # Closest point P = c (|c| - R) / |c|. Turning angle from the vertex to P seen from the centre, computed
    # from a = vertex - c and the small step u = P - vertex (stable when R is huge): angle(a, a + u).
    ux, uy = cx / dist * gap - x0, cy / dist * gap - y0
    ax, ay = x0 - cx, y0 - cy
    turn = np.arctan2(ax * uy - ay * ux, ax * ax + ay * ay + ax * ux + ay * uy)
    s = -np.sign(k) * turn * radius
    zz = z0 + s * pz / pt
    return np.where(charged, d0, 0.0), np.where(charged, zz, 0.0)
