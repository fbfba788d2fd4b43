import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semrec", *args], capture_output=True, text=True)


def test_import_inspect_split_round_trip(tmp_path):
    src = tmp_path / "seq.txt"
    src.write_text("1 1 2 3 4\n2 2 3 4\n3 1 3 4 5\n")
    r = run("data", "import", "s3rec", str(src), "--out", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr
    r = run("data", "inspect", str(tmp_path / "ds"))
    assert r.returncode == 0 and "interactions" in r.stdout and "11" in r.stdout
    r = run("data", "split", str(tmp_path / "ds"), "--out", str(tmp_path / "split"))
    assert r.returncode == 0 and (tmp_path / "split" / "split.npz").exists()


def test_malformed_input_names_file_and_line_and_writes_nothing(tmp_path):
    src = tmp_path / "seq.txt"
    src.write_text("1 1 2 3\n2 2 x 4\n")
    r = run("data", "import", "s3rec", str(src), "--out", str(tmp_path / "ds"))
    assert r.returncode == 2
    assert "seq.txt" in r.stderr and "line 2" in r.stderr and "--on-bad-rows skip" in r.stderr
    assert not (tmp_path / "ds").exists()
    r = run("data", "import", "s3rec", str(src), "--out", str(tmp_path / "ds"), "--on-bad-rows", "skip")
    assert r.returncode == 0 and "skipped 1 bad rows" in r.stderr


def test_unknown_format_is_a_clear_error(tmp_path):
    r = run("data", "import", "nope", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "'nope' is not one of" in r.stderr and "Traceback" not in r.stderr
