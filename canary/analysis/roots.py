"""One root of a scalar function on a bracket: scipy.optimize.brentq, without importing scipy.optimize.

The judge solves for a bound or a boundary with Brent's method at nearly every look (`evidence`,
`sequential`). `import scipy.optimize` also imports scipy.sparse, scipy.linalg, scipy.spatial,
scipy.fft and more: ~28 MB of a process's RSS (measured from /proc/self/status after numpy and
scipy.special), a tenth of a controller replica's memory budget, for one function. Brent's method
itself is scipy's C extension `scipy.optimize._zeros`, which imports nothing; `brentq` loads that
module file alone from scipy's installation and calls it exactly as scipy.optimize.brentq does
(its argument checks and its NaN check included), so the roots are the same numbers.

It is used only if it is found and finds the roots recorded below (scipy 1.17) at a few probes, as
`stats` does with scipy's private ufuncs; otherwise `brentq` imports scipy.optimize and calls its
public brentq. tests/unit/test_roots.py compares both on many functions.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from functools import cache
from pathlib import Path
from typing import Any, Callable

# scipy.optimize.brentq's defaults
XTOL = 2e-12
RTOL = 4 * sys.float_info.epsilon
MAXITER = 100


def _load_zeros() -> Any | None:
    """scipy.optimize._zeros, loaded from its file without running scipy.optimize's __init__; None
    when it is not there (another layout) or does not load. Not put in sys.modules: scipy.optimize,
    if something imports it later, loads its own."""
    import scipy  # noqa: F401 - scipy.__init__ only sets up the package: ~1 MB

    spec_dir = Path(scipy.__file__).parent / "optimize"
    name = "scipy.optimize._zeros"
    for path in sorted(spec_dir.glob("_zeros.*")):
        if path.suffix not in (".so", ".pyd"):
            continue
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                return None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except (ImportError, OSError):
            return None
        return module if callable(getattr(module, "_brentq", None)) else None
    return None


# (function, a, b, xtol, root recorded with scipy.optimize.brentq, scipy 1.17)
_PROBES: list[tuple[Callable[[float], float], float, float, float, float]] = [
    (lambda x: x * x - 2.0, 0.0, 2.0, 1e-12, 1.4142135623731364),
    (lambda x: math.cos(x) - x, 0.0, 1.0, 1e-7, 0.7390851295647751),
    (lambda x: math.exp(x) - 5.0, -3.0, 4.0, 1e-5, 1.6094379854307501),
]


@cache
def _fast() -> Callable[..., float] | None:
    zeros = _load_zeros()
    if zeros is None:
        return None
    try:
        same = all(float(zeros._brentq(f, a, b, xtol, RTOL, MAXITER, (), False, True)) == want
                   for f, a, b, xtol, want in _PROBES)
    except (TypeError, ValueError, RuntimeError):
        return None
    return zeros._brentq if same else None  # type: ignore[no-any-return]


def brentq(f: Callable[[float], float], a: float, b: float, *, xtol: float = XTOL, rtol: float = RTOL,
           maxiter: int = MAXITER) -> float:
    """A root of `f` in [a, b] (f(a) and f(b) of opposite signs), to within xtol + rtol*|root|:
    scipy.optimize.brentq(f, a, b, xtol=xtol, rtol=rtol, maxiter=maxiter), the same number.

    Raises ValueError as it does (no sign change over the bracket, xtol <= 0, rtol below 4 eps, or
    f is NaN at a point it tries) and RuntimeError when it does not converge in `maxiter` steps."""
    fast = _fast()
    if fast is None:
        from scipy import optimize

        return float(optimize.brentq(f, a, b, xtol=xtol, rtol=rtol, maxiter=maxiter))
    if xtol <= 0:
        raise ValueError(f"xtol too small ({xtol:g} <= 0)")
    if rtol < RTOL:
        raise ValueError(f"rtol too small ({rtol:g} < {RTOL:g})")

    def checked(x: float) -> float:
        fx = f(x)
        if math.isnan(fx):
            raise ValueError(f"The function value at x={x} is NaN; solver cannot continue.")
        return fx

    return float(fast(checked, a, b, xtol, rtol, maxiter, (), False, True))
