"""Helix impact parameters: limits and an independent brute-force closest approach."""

from __future__ import annotations

import numpy as np
import pytest

from jetscale.data.helix import CURVATURE_CONSTANT, helix_impact, straight_line_impact


@pytest.fixture
def tracks():
    rng = np.random.default_rng(7)
    n = 200
    x0, y0 = rng.normal(0, 5, (2, n))
    z0 = rng.normal(0, 10, n)
    px, py, pz = rng.normal(0, 3, (3, n))
    q = rng.choice([-1.0, 1.0], n)
    return x0, y0, z0, px, py, pz, q


def test_helix_tends_to_straight_line_as_field_vanishes(tracks):
    x0, y0, z0, px, py, pz, q = tracks
    d0, zz = helix_impact(x0, y0, z0, px, py, pz, q, 1e-7)
    d0_line, z_line = straight_line_impact(x0, y0, z0, px, py, pz)
    np.testing.assert_allclose(d0, d0_line, atol=1e-6)
    np.testing.assert_allclose(zz, z_line, atol=1e-5)
    d0_zero, z_zero = helix_impact(x0, y0, z0, px, py, pz, q, 0.0)
    np.testing.assert_allclose(d0_zero, d0_line)


def test_tracks_from_origin_have_zero_impact_parameters(tracks):
    _, _, _, px, py, pz, q = tracks
    zeros = np.zeros_like(px)
    d0, zz = helix_impact(zeros, zeros, zeros, px, py, pz, q, 3.0)
    np.testing.assert_allclose(d0, 0.0, atol=1e-9)
    np.testing.assert_allclose(zz, 0.0, atol=1e-9)


def test_neutral_particles_get_zero(tracks):
    x0, y0, z0, px, py, pz, _ = tracks
    d0, zz = helix_impact(x0, y0, z0, px, py, pz, np.zeros_like(px), 3.0)
    assert not d0.any() and not zz.any()


def test_helix_matches_brute_force_closest_approach():
    """Walk the helix in small steps (both directions) and find the closest point to the beam line."""
    rng = np.random.default_rng(3)
    b_field = 3.0
    for _ in range(20):
        x0, y0, z0 = rng.normal(0, 3, 3)
        px, py = rng.normal(0, 1.0, 2)
        pz = rng.normal(0, 1.0)
        q = rng.choice([-1.0, 1.0])
        d0, zz = helix_impact(x0, y0, z0, px, py, pz, q, b_field)
        k = CURVATURE_CONSTANT * q * b_field
        pt = np.hypot(px, py)
        radius = pt / abs(k)
        phi0 = np.arctan2(py, px)
        omega = -np.sign(k) / radius  # turning rate (clockwise for k > 0 in +z field)
        cx, cy = x0 + py / k, y0 - px / k

        def walk(s, cx=cx, cy=cy, x0=x0, y0=y0, omega=omega):
            x = cx + (x0 - cx) * np.cos(omega * s) - (y0 - cy) * np.sin(omega * s)
            y = cy + (x0 - cx) * np.sin(omega * s) + (y0 - cy) * np.cos(omega * s)
            return x, y

        s = np.linspace(-np.pi * radius, np.pi * radius, 400_001)  # transverse arc length
        x, y = walk(s)
        step = s[1] - s[0]
        fine = np.linspace(s[np.argmin(np.hypot(x, y))] - 2 * step, s[np.argmin(np.hypot(x, y))] + 2 * step, 100_001)
        # check the parametrisation: initial direction equals the momentum direction
        dx, dy = x[200_001] - x[199_999], y[200_001] - y[199_999]
        assert abs(np.arctan2(dy, dx) - phi0) < 1e-3 or abs(abs(np.arctan2(dy, dx) - phi0) - 2 * np.pi) < 1e-3
        fx, fy = walk(fine)
        i = np.argmin(np.hypot(fx, fy))
        assert abs(abs(d0) - np.hypot(fx[i], fy[i])) < 1e-6
        assert abs(zz - (z0 + fine[i] * pz / pt)) < 1e-4 * max(1.0, abs(pz / pt))
