"""The bracket/bisection kernel against a plain NumPy reference, on functions with known boundaries."""

import numpy as np

from kernels.boundary import CENSORED, FOUND, boundary_step, perturbation_points, ray_points


def reference_search(label_at, base, t0, tmax, growth, rtol):
    """One ray at a time, the obvious way: grow until the label flips, then bisect."""
    lo, t = 0.0, t0
    while True:
        lab = label_at(t)
        if lab != base:
            hi, flip = t, lab
            break
        lo = t
        if t >= tmax:
            return None, None, 0
        t = min(t * growth, tmax)
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        lab = label_at(mid)
        if lab != base:
            hi, flip = mid, lab
        else:
            lo = mid
    return hi, flip, 0


def run_kernel(thresholds, t0, tmax, growth=2.0, rtol=1e-3):
    """Rays along a line with label = number of thresholds passed."""
    R = len(thresholds)
    lo, hi = np.zeros(R), np.full(R, np.inf)
    t, phase = np.full(R, t0), np.zeros(R, np.int8)
    flip, base = np.full(R, -1, np.int64), np.zeros(R, np.int64)
    tm = np.full(R, tmax)
    rounds, queries = 0, 0
    active, spare = np.arange(R, dtype=np.int64), np.empty(R, np.int64)
    while active.size:
        labels = np.array([int(t[r] >= thresholds[r]) * (r % 3 + 1) for r in active], np.int64)
        queries += active.size
        k = boundary_step(active, labels, base, lo, hi, t, phase, flip, tm, growth, rtol, 0.0, spare)
        # the kernel's list of rays still searching is exactly those not finished
        np.testing.assert_array_equal(spare[:k], active[phase[active] < FOUND])
        active, spare = spare[:k].copy(), active
        rounds += 1
    return hi, flip, phase, rounds, queries


def test_kernel_matches_reference_and_truth():
    rng = np.random.default_rng(0)
    thresholds = rng.uniform(0.01, 5.0, 200)
    hi, flip, phase, _, _ = run_kernel(thresholds, t0=0.05, tmax=100.0)
    for r, th in enumerate(thresholds):
        ref_hi, ref_flip, _ = reference_search(lambda s: int(s >= th) * (r % 3 + 1), 0, 0.05, 100.0,
                                               2.0, 1e-3)
        assert phase[r] == FOUND
        assert hi[r] == ref_hi and flip[r] == ref_flip
        assert th <= hi[r] <= th * (1 + 1e-3) + 1e-12


def test_rays_without_flip_are_censored():
    hi, flip, phase, _, queries = run_kernel(np.array([1e9, 0.5]), t0=0.1, tmax=3.0)
    assert phase[0] == CENSORED and np.isinf(hi[0]) and flip[0] == -1
    assert phase[1] == FOUND


def test_queries_are_bracket_steps_plus_bisection():
    th = np.array([1.0])
    _, _, _, _, queries = run_kernel(th, t0=0.01, tmax=100.0, growth=2.0, rtol=1e-3)
    bracket = int(np.ceil(np.log2(1.0 / 0.01))) + 1
    bisect = int(np.ceil(np.log2(1.0 / 1e-3)))
    assert queries <= bracket + bisect + 1


def test_ray_points_clip_to_bounds():
    x = np.array([[0.5, 0.5]], np.float32)
    u = np.array([[1.0, 0.0], [0.0, -1.0]], np.float32)
    out = np.zeros((2, 2), np.float32)
    ray_points(x, u, np.array([0, 0]), np.array([0, 1]), np.array([0.25, 2.0]),
               np.zeros(2, np.float32), np.ones(2, np.float32), out)
    np.testing.assert_allclose(out, [[0.75, 0.5], [0.5, 0.0]])


def test_perturbation_points_match_broadcasting():
    rng = np.random.default_rng(1)
    pts = rng.random((5, 7), dtype=np.float32)
    radius = rng.random(5, dtype=np.float32)
    delta = rng.standard_normal((3, 7), dtype=np.float32)
    out = np.empty((15, 7), np.float32)
    perturbation_points(pts, radius, delta, out)
    want = (pts[:, None, :] + radius[:, None, None] * delta[None]).reshape(15, 7)
    np.testing.assert_allclose(out, want, rtol=1e-6)
