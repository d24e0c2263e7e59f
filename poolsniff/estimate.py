"""Hashrate from accepted shares, with an exact (Garwood) Poisson 95% interval.

Shares arrive as a Poisson process of rate ``H / W`` (W = expected hashes per
share of the job in force). With ``N`` accepted shares over an *exposure*
``E = Σ dt / W`` (seconds per hash, summed while a job with known work was in
force), the MLE is ``H = N / E`` and the exact 95% interval is
``[χ²(0.025; 2N)/2E, χ²(0.975; 2N+2)/2E]`` (shared/docs/mining-protocols.md §6.3).
The chi-square quantiles come from SciPy (``scipy.special.chdtri``, the inverse of
the chi-square survival function) rather than an approximation.
"""

from __future__ import annotations

import math


DIFF1_WORK = 2.0 ** 48 / 0xFFFF      # hashes per share at difficulty 1 (cgminer truediffone)

#: hashes per unit of pool difficulty, per algorithm (§6.2)
WORK_PER_DIFF = {
    "sha256d": DIFF1_WORK,
    "ethash": DIFF1_WORK,
    "etchash": DIFF1_WORK,
    "kheavyhash": 2.0 ** 32,      # kaspa-stratum-bridge convention
    "scrypt": 2.0 ** 16,          # cpuminer divides the wire difficulty by 65536
}

#: algorithms whose difficulty-to-work is not settled (§6.2: Grin, Beam): no hashes per share
NOT_COVERED = {"cuckoo", "beamhash"}

#: algorithms whose pool difficulty uses the scrypt convention, by coin
SCRYPT_COINS = {"LTC", "DOGE"}

#: the unit a hashrate of each algorithm is counted in
UNITS = {"equihash": "Sol/s", "cuckoo": "g/s", "beamhash": "Sol/s"}


def hashrate_ci(n: int, exposure: float, conf: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) in hashes per second; exposure in seconds per hash."""
    if exposure <= 0:
        raise ValueError("exposure must be positive")
    from scipy.special import chdtri      # chdtri(k, q) = chi-square quantile of 1 - q

    a = 1.0 - conf
    if n <= 0:
        return 0.0, 0.0, float(chdtri(2, a / 2) / 2 / exposure)
    lo = float(chdtri(2 * n, 1 - a / 2) / 2 / exposure)
    hi = float(chdtri(2 * n + 2, a / 2) / 2 / exposure)
    return n / exposure, lo, hi


def sum_rate_ci(counts: list[int], exposures: list[float],
                conf: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) of the total rate of several independent miners, each with
    ``counts[i]`` accepted shares over ``exposures[i]`` seconds per hash.

    The total is Σ N_i/E_i, a weighted sum of Poisson counts; the interval is Fay and
    Feuer's gamma interval for such sums (Statistics in Medicine 16:791-801, 1997), which
    is Garwood's exact interval when there is one miner."""
    from scipy.special import chdtri

    pairs = [(n, e) for n, e in zip(counts, exposures) if e > 0]
    if not pairs:
        raise ValueError("no miner with a positive exposure")
    a = 1.0 - conf
    w = [1.0 / e for _n, e in pairs]
    y = sum(wi * n for wi, (n, _e) in zip(w, pairs))
    v = sum(wi * wi * n for wi, (n, _e) in zip(w, pairs))
    wm = max(w)
    lo = 0.0 if y <= 0 else float(v / (2 * y) * chdtri(2 * y * y / v, 1 - a / 2))
    hi = float((v + wm * wm) / (2 * (y + wm)) * chdtri(2 * (y + wm) ** 2 / (v + wm * wm), a / 2))
    return y, lo, hi


def work_factor(algorithm: str, unit: str) -> float | None:
    """Hashes per raw work unit: 1 for targets, hashes-per-difficulty for difficulties (the
    cgminer convention where the reference names none); None where it is not settled."""
    if unit == "target":
        return 1.0
    if algorithm in NOT_COVERED:
        return None
    return WORK_PER_DIFF.get(algorithm, DIFF1_WORK)


def human_rate(hs: float | None, algorithm: str = "") -> str:
    if hs is None or math.isnan(hs):
        return "-"
    unit = UNITS.get(algorithm, "H/s")
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if hs >= scale:
            return f"{hs / scale:.3g} {prefix}{unit}"
    return f"{hs:.3g} {unit}"
