"""Developer task runner: ``nox`` runs tests, lint and typecheck; ``nox -s bench`` runs the benchmarks,
``nox -s bench_real -- ...`` the real-data (RoofVec) training benchmark.

Sessions reuse the current interpreter's environment (``venv_backend="none"``) so that the CPU torch wheel
installed by the README's set-up is used rather than a multi-GB CUDA download.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "none"


@nox.session
def tests(session: nox.Session) -> None:
    """Fast test suite (the README's test command)."""
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(name="tests_slow")
def tests_slow(session: nox.Session) -> None:
    """Slow tests (longer training runs)."""
    session.run("python", "-m", "pytest", "-q", "-m", "slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.run("ruff", "check", "roofmapnet", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "roofmapnet", "tests", "bench", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy on the package."""
    session.run("mypy", "roofmapnet")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (speed as side-by-side ratios, with peak memory); results go to docs/performance.md by hand."""
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(name="bench_real", default=False)
def bench_real(session: nox.Session) -> None:
    """Real-data benchmark (RoofVec): ``nox -s bench_real -- ROOFVEC/SimpleRoofTXT --steps 2000 --eval-every 250``."""
    session.run("python", "bench/bench_real.py", *session.posargs)


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """Regenerate docs/cli.md and docs/config.md."""
    session.run("python", "-m", "roofmapnet.docgen")


if __name__ == "__main__":
    nox.main()
