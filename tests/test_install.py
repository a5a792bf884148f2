"""The package as users get it: build the wheel, install it in a fresh virtual environment
and run `adcli` from another directory. This proves the grammars ship inside the wheel
and are found wherever the installed tool runs."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = "value\t10.0\nd/dx\t7.0\nd/dy\t2.0\n"

# Signs that a build failed only because its backend could not be downloaded.
OFFLINE = ("No matching distribution found", "Could not find a version that satisfies",
           "Failed to establish a new connection", "Temporary failure in name resolution",
           "Network is unreachable", "ProxyError")


def run(cmd, **kw):
    kw.setdefault("timeout", 600)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def clean_env(tmp):
    """No PYTHONPATH and a private cache, so nothing but the installation is used."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build the wheel. Offline, this needs hatchling in this environment; without it the
    build backend is fetched from the package index, and the test is skipped only if that
    is impossible."""
    out = tmp_path_factory.mktemp("dist")
    have_backend = importlib.util.find_spec("hatchling") is not None
    if importlib.util.find_spec("build") is not None:
        cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", out]
        cmd += ["--no-isolation"] if have_backend else []
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out]
        cmd += ["--no-build-isolation"] if have_backend else []
    proc = run(cmd + [ROOT], cwd=ROOT)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        if not have_backend and any(s in log for s in OFFLINE):
            pytest.skip("cannot build the wheel offline: hatchling is not installed and "
                        "the package index is unreachable")
        pytest.fail(f"building the wheel failed:\n{log}")
    wheels = sorted(out.glob("adcli-*.whl"))
    assert len(wheels) == 1, log
    return wheels[0]


def test_wheel_holds_the_package_the_grammars_and_the_command(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "adcli/grammars/expr.lark" in names
        assert {"adcli/__init__.py", "adcli/__main__.py", "adcli/cli.py", "adcli/ops.py"} <= names
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "adcli = adcli.cli:run" in z.read(entry_points).decode()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "Provides-Extra: test" in z.read(metadata).decode()


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory):
    """A new virtual environment with the wheel installed (without its dependencies, so
    that no network is needed). The dependencies come from this environment's
    site-packages, added by a .pth file after the venv's own: that adds the folders only,
    not the editable install of this checkout (whose .pth file is not processed)."""
    venv = tmp_path_factory.mktemp("venv")
    proc = run([sys.executable, "-m", "venv", "--clear", venv])
    assert proc.returncode == 0, proc.stderr
    py = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    proc = run([py, "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir", wheel])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_adcli_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    return venv


def test_installed_adcli_runs_from_another_directory(fresh_venv, tmp_path):
    bindir = fresh_venv / ("Scripts" if os.name == "nt" else "bin")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env(tmp_path)

    # the code and the grammars come from the fresh environment, not from this checkout
    proc = run([bindir / "python", "-c",
                "import adcli, adcli.parse; print(adcli.__file__); print(adcli.parse.grammar_dir())"],
               cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    module, grammars = proc.stdout.split()
    assert Path(module).resolve().is_relative_to(fresh_venv.resolve())
    assert Path(grammars).resolve().is_relative_to(fresh_venv.resolve())
    assert not Path(grammars).resolve().is_relative_to(ROOT)

    # the console script
    proc = run([bindir / "adcli", "grad", "x*(x+y)", "--at", "x=2,y=3"], cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == EXPECTED

    proc = run([bindir / "adcli", "grad", "x*(x+y)", "--at", "x=2,y=3", "--json"],
               cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["value"] == 10 and result["grad"] == {"x": 7, "y": 2}

    # python -m adcli
    proc = run([bindir / "python", "-m", "adcli", "--version"], cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("adcli ")

    # a parse error is a message and exit code 2, not a traceback
    proc = run([bindir / "adcli", "eval", "sin(x"], cwd=elsewhere, env=env)
    assert proc.returncode == 2
    assert "syntax error" in proc.stderr and "Traceback" not in proc.stderr


def test_this_environments_adcli_runs_from_another_directory(tmp_path):
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("adcli", path=search)
    assert exe, "the adcli command is not installed in this environment"
    proc = run([exe, "grad", "x*(x+y)", "--at", "x=2,y=3"], cwd=tmp_path, env=clean_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == EXPECTED
