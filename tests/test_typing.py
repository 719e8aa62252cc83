"""``mypy --strict`` on a user's code: precise results from cugrad.gradient, no typo passes.

``tests/typing/user_ok.py`` must type-check (its ``assert_type`` calls pin every result type) and
``tests/typing/user_bad.py`` must fail on exactly the lines marked with an E comment.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import cugrad

HERE = Path(__file__).resolve().parent / "typing"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason='mypy is not installed (it comes with the test extra: pip install -e ".[test]")',
)


def _mypy(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # mypy does not follow the import hook of an editable install: point it at the folder that
    # holds the cugrad package (src/ of a checkout), unless that is site-packages itself.
    package_parent = Path(cugrad.__file__).resolve().parents[1]
    site_dirs = {Path(p).resolve() for p in sysconfig.get_paths().values()}
    if package_parent not in site_dirs:
        env["MYPYPATH"] = str(package_parent)
    return subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
            "--no-error-summary", "--show-error-codes", "--cache-dir", str(tmp_path / "cache"),
            str(path),
        ],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_user_code_type_checks_with_precise_results(tmp_path):
    proc = _mypy(HERE / "user_ok.py", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_user_mistakes_are_reported_where_they_are(tmp_path):
    proc = _mypy(HERE / "user_bad.py", tmp_path)
    lines = (HERE / "user_bad.py").read_text().splitlines()
    expected = {n for n, text in enumerate(lines, start=1) if "# E" in text}
    reported = {
        int(m.group(1))
        for m in re.finditer(r"^.*user_bad\.py:(\d+): error:", proc.stdout, re.MULTILINE)
    }
    assert expected, "user_bad.py marks no line"
    assert reported == expected, proc.stdout + proc.stderr
