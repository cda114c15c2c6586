"""The deploy files agree with setup.cfg and the Procfile."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _install_requires() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return [line.strip() for line in config["options"]["install_requires"].splitlines() if line]


def test_requirements_txt_pins_exactly_what_setup_cfg_requires():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pinned = [line for line in lines if line and not line.startswith(("#", "-e"))]
    assert pinned == _install_requires()
    assert all("==" in requirement for requirement in pinned)


def test_the_procfile_declares_web_worker_and_scheduler_run_with_exec():
    entries = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert sorted(entries) == ["scheduler", "web", "worker"]
    # exec: the signal reaches the process itself and its exit code is the one honcho reports.
    assert all(command.startswith("exec ") for command in entries.values())
    assert "--threads ${CALLBOARD_WORKER_THREADS:-5}" in entries["worker"]


def test_python_version_matches_python_requires():
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


def test_app_json_declares_the_procfile_processes_and_known_settings():
    import json

    from settings import settings_from

    app = json.loads((ROOT / "app.json").read_text())
    procfile = [line.split(":")[0] for line in (ROOT / "Procfile").read_text().splitlines() if line]
    assert sorted(app["formation"]) == sorted(procfile)
    assert {addon["plan"] for addon in app["addons"]} == {"heroku-postgresql", "heroku-redis"}
    assert app["env"]["CALLBOARD_API_TOKEN"]["generator"] == "secret"
    # Every fixed value is one settings.py accepts (a typo would fail the deploy at boot).
    fixed = {name: spec["value"] for name, spec in app["env"].items() if "value" in spec}
    settings_from({**fixed, "CALLBOARD_API_TOKEN": "x" * 32})
    # ...and every name is one that settings.py or the Procfile reads.
    readers = (ROOT / "settings.py").read_text() + (ROOT / "Procfile").read_text()
    assert all(name in readers for name in app["env"])


def test_app_json_shutdown_timeout_fits_the_platform_grace_period():
    import json

    app = json.loads((ROOT / "app.json").read_text())
    # The platform sends SIGKILL 30 s after SIGTERM; Dramatiq's own bound (Procfile) is 25 s.
    assert float(app["env"]["CALLBOARD_SHUTDOWN_TIMEOUT"]["value"]) < 25
    assert "--worker-shutdown-timeout 25000" in (ROOT / "Procfile").read_text()
