"""The real-data switch: with SEMREC_REQUIRE_DATA=1 a missing ../shared/data path fails the test, never skips."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_missing_shared_data_fails_under_require_data(tmp_path):
    test = tmp_path / "test_needs_data.py"
    test.write_text("from tests.conftest import shared_path\n\n"
                    "def test_it():\n    shared_path('no-such-dataset-folder')\n")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), str(test)]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    skipped = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    failed = subprocess.run(base, cwd=ROOT, env=env | {"SEMREC_REQUIRE_DATA": "1"}, capture_output=True, text=True)
    assert failed.returncode == 1 and "SEMREC_REQUIRE_DATA=1" in failed.stdout, failed.stdout
