"""The CLI skeleton: help, info, and the one-line error contract."""

import json
import subprocess
import sys

from engine import weights
from engine.cli import main
from engine.errors import EngineError


def run_engine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_info():
    proc = run_engine("--help")
    assert proc.returncode == 0
    assert "info" in proc.stdout


def test_info_json_reports_versions_device_and_weights():
    proc = run_engine("info", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["versions"]["torch"].startswith("2.14.1")
    assert data["device"] in ("cpu", "cuda")
    assert set(data["weights"]) == set(weights.manifest())


def test_invalid_mvn_file_is_reported_invalid(tmp_path, monkeypatch):
    bad = tmp_path / "view_light" / "view_mvn.pth"
    bad.parent.mkdir()
    bad.write_bytes(b"not a torch file")
    monkeypatch.setenv("GAN2SHAPE_WEIGHTS", str(tmp_path))
    from engine.commands.info import collect

    status = collect()["weights"]["view-mvn"]
    assert status["found"] and not status["valid"]
    assert "view_mvn.pth" in status["detail"]


def test_resolve_missing_weights_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("GAN2SHAPE_WEIGHTS", str(tmp_path))
    try:
        weights.resolve("stylegan2-car")
    except EngineError as exc:
        assert "stylegan2-car-config-f.pt" in str(exc)
    else:
        raise AssertionError("missing weights did not raise")


def test_unknown_command_exits_nonzero():
    assert main([]) == 1


def test_usage_error_with_json_emits_one_error_event():
    proc = run_engine("info", "--json", "--no-such-option")
    assert proc.returncode == 2
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["error"]
    assert "--no-such-option" in events[0]["message"]
