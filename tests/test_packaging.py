"""The package as shipped: the sdist and the wheel carry what they must, and the wheel installed
with no extras into a fresh virtual environment runs ``durable-ir demo``.

Builds with ``python -m build`` (the ``dev`` extra has it) from a copy of the working tree, so
the tree itself gets no ``build/`` or ``*.egg-info``. The build and the install fetch from the
configured package index (pip's cache makes a second run fast).
"""

from __future__ import annotations

import email.message
import email.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
NAME = "durable_ir"
VERSION = PYPROJECT["version"]
FINAL_LINE = re.compile(r"demo incidents=3 resolved=1 escalated=2 restarts_survived=[1-9]")
# Not copied into the build tree: local state, caches and earlier builds.
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv*",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    "*.db",
    "*.db-*",
    "*.db.locks",
)


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


def run(
    command: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Runs ``command`` and returns its output; fails the test if it fails or times out."""
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
            env=env,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{command} timed out after {timeout:.0f}s:\n{exc.stdout!r}\n{exc.stderr!r}")
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{output}"
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new user's shell: no virtual environment or PYTHONPATH of the test
    run, no API key (the demo stays offline), no durable-ir settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "ANTHROPIC_API_KEY"}
        and not key.startswith("DURABLE_IR_")
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist, and the wheel ``build`` makes from that sdist (so a file the sdist misses
    breaks the wheel too)."""
    base = tmp_path_factory.mktemp("packaging")
    tree = base / "tree"
    shutil.copytree(ROOT, tree, ignore=NOT_SOURCES)
    out = base / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(out), str(tree)], timeout=300)
    (sdist,) = out.glob(f"{NAME}-{VERSION}.tar.gz")
    (wheel,) = out.glob(f"{NAME}-{VERSION}-py3-none-any.whl")
    return Dists(sdist=sdist, wheel=wheel)


def tracked_files(*folders: str) -> list[str]:
    """The files under ``folders`` that a clean clone has (git's list; the tree's otherwise)."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        listed = run(["git", "-C", str(ROOT), "ls-files", "--", *folders], timeout=60)
        # A file deleted in the working tree but not yet in git's index is not shipped.
        return [name for name in listed.splitlines() if (ROOT / name).is_file()]
    return [
        path.relative_to(ROOT).as_posix()
        for folder in folders
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]


def metadata(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


def core_requirements(meta: email.message.Message) -> list[str]:
    return [req for req in meta.get_all("Requires-Dist", []) if "extra ==" not in req]


def extra_requirements(meta: email.message.Message, extra: str) -> list[str]:
    return [req for req in meta.get_all("Requires-Dist", []) if f'extra == "{extra}"' in req]


def check_metadata(meta: email.message.Message) -> None:
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"], meta.get_all("License-File")
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL", []))
    assert set(urls) >= {"Homepage", "Repository", "Documentation", "Issues"}, urls
    assert all(url.startswith("https://") for url in urls.values()), urls
    extras = set(meta.get_all("Provides-Extra", []))
    assert extras == set(PYPROJECT["optional-dependencies"]), extras
    assert {"postgres", "anthropic", "slack", "service", "encryption", "dev"} <= extras
    core = core_requirements(meta)
    # psycopg without an implementation in the core; the prebuilt one is the `postgres` extra.
    assert any(re.match(r"psycopg[<>=!~ ]", req) for req in core), core
    assert not any("psycopg[binary]" in req for req in core), core
    assert any(req.startswith("psycopg[binary]") for req in extra_requirements(meta, "postgres"))
    assert any(req.startswith("psycopg[binary]") for req in extra_requirements(meta, "dev"))
    # The demo renders with rich, and must run with no extras.
    assert any(req.startswith("rich") for req in core), core


def test_the_wheel_carries_the_license_and_the_metadata(dists: Dists) -> None:
    dist_info = f"{NAME}-{VERSION}.dist-info"
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        listing = sorted(name for name in names if name.startswith(dist_info))
        assert f"{dist_info}/licenses/LICENSE" in names, listing
        license_text = wheel.read(f"{dist_info}/licenses/LICENSE").decode()
        meta = metadata(wheel.read(f"{dist_info}/METADATA").decode())
        assert f"{NAME}/py.typed" in names
        assert f"{NAME}/service/console/index.html" in names
    assert license_text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    check_metadata(meta)


def test_the_sdist_carries_the_license_docs_and_examples(dists: Dists) -> None:
    prefix = f"{NAME}-{VERSION}"
    with tarfile.open(dists.sdist) as sdist:
        names = {name.removeprefix(f"{prefix}/") for name in sdist.getnames()}
        pkg_info = sdist.extractfile(f"{prefix}/PKG-INFO")
        assert pkg_info is not None
        meta = metadata(pkg_info.read().decode())
    for required in ("LICENSE", "README.md", "pyproject.toml"):
        assert required in names, required
    shipped = tracked_files("docs", "examples")
    assert any(name.startswith("docs/") for name in shipped)
    assert any(name.startswith("examples/") for name in shipped)
    missing = sorted(set(shipped) - names)
    assert not missing, f"tracked in docs/ or examples/ but not in the sdist: {missing}"
    assert not [name for name in names if name.endswith((".pyc", ".db"))]
    check_metadata(meta)


@pytest.fixture
def fresh_venv(tmp_path: Path) -> Iterator[Path]:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120, env=clean_env())
    yield venv
    shutil.rmtree(venv, ignore_errors=True)


def test_the_wheel_with_no_extras_runs_the_demo(
    dists: Dists, fresh_venv: Path, tmp_path: Path
) -> None:
    bin_dir = fresh_venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    # No extras: SQLite only, which loads no psycopg (and needs no libpq).
    target = str(dists.wheel)
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", COLUMNS="120")
    run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", target],
        timeout=600,
        env=env,
    )
    listed = run([str(python), "-m", "pip", "list", "--format=freeze"], timeout=120, env=env)
    installed = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert "durable-ir" in installed
    assert "rich" in installed
    assert "psycopg-binary" not in installed  # no extras: no prebuilt libpq
    loaded = run(
        [str(python), "-c", "import sys, durable_ir; print('psycopg' in sys.modules)"],
        timeout=120,
        env=env,
    )
    assert loaded.strip() == "False"  # importing the library loads no PostgreSQL driver
    for dev_only in ("pytest", "fastapi", "anthropic", "slack-sdk", "build"):
        assert dev_only not in installed, dev_only

    work = tmp_path / "cwd"
    work.mkdir()
    out = run([str(bin_dir / "durable-ir"), "demo"], timeout=300, env=env, cwd=work)
    lines = out.rstrip("\n").splitlines()
    assert lines and FINAL_LINE.fullmatch(lines[-1]), out[-2000:]
    assert "CorrelationAnalyzer" in " ".join(out.split())  # offline: no API key
