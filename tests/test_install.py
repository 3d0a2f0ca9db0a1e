"""The built wheel carries the runbooks: installed into a fresh venv, the command works from any
directory. (Dependencies come from the test environment, so the test needs no network.)"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done


def test_wheel_installs_into_a_fresh_venv_and_works_from_another_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        wheels,
        ROOT,
    )
    (wheel,) = wheels.glob("dcx_runbook-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
    purelib = run(
        venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ).stdout.strip()
    (Path(purelib) / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exe = venv / "bin" / "dcx-runbook"
    assert "Usage: dcx-runbook" in run(exe, "--help", cwd=elsewhere).stdout
    listed = run(exe, "list", cwd=elsewhere).stdout
    assert "wallet-fix" in listed and "bundled" in listed
    assert '"$defs"' in run(exe, "schema", cwd=elsewhere).stdout
    assert "ok (6 steps)" in run(exe, "validate", "wallet-fix", cwd=elsewhere).stderr
    where = run(
        venv / "bin" / "python",
        "-c",
        "import dcx_runbook; print(dcx_runbook.__file__)",
        cwd=elsewhere,
    ).stdout
    assert where.startswith(str(venv)), "the wheel, not the source tree, was imported"
