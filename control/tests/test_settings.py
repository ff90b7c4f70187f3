"""Settings are checked once, when a process starts: a bad value stops it with a message
naming the setting, instead of failing the first request that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediagrid import agent, config, gateway, tracker


def test_a_bad_value_in_the_environment_names_its_setting() -> None:
    with pytest.raises(config.ConfigError, match="DB_PORT") as err:
        config.load({"MEDIAGRID_DB_PORT": "db1"})
    assert "MEDIAGRID_DB_PORT" in str(err.value) and "'db1'" in str(err.value)


def test_a_bad_value_in_the_file_names_its_setting(tmp_path: Path) -> None:
    conf = tmp_path / "tracker.toml"
    conf.write_text('HEARTBEAT_INTERVAL = "fast"\n')
    with pytest.raises(config.ConfigError, match=r"HEARTBEAT_INTERVAL.*expected a number"):
        config.load({}, path=str(conf))


def test_a_misspelt_setting_in_the_file_stops_the_start(tmp_path: Path) -> None:
    # MAX_FILE_ID_LENGTH was a setting once; a file that still sets it is told so
    conf = tmp_path / "storage.toml"
    conf.write_text("RESERVE_BYTES = 10\nRESERV_BYTES = 20\nMAX_FILE_ID_LENGTH = 100\n")
    with pytest.raises(config.ConfigError, match="unknown settings MAX_FILE_ID_LENGTH, RESERV_BYTES"):
        config.load({}, path=str(conf))


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("UPLOAD_CHUNK", 0, "above 0"),
        ("RESERVE_BYTES", -1, "at least 0"),
        ("DB_PORT", 70000, "at most 65535"),
        ("ROUTE_CACHE_SIZE", True, "an integer"),
        ("TRACKERS", "http://t1", "a list of strings"),
        ("ASSIGN_STRATEGY", "fullest", "unknown assignment strategy"),
        ("ASSIGN_STRATEGY", "no_such_module:pick", "No module named"),
    ],
)
def test_out_of_range_values_fail(key: str, value: object, why: str) -> None:
    with pytest.raises(config.ConfigError, match=why) as err:
        config.Settings.from_mapping({key: value})
    assert key in str(err.value)


def test_a_service_with_a_bad_setting_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(config.ConfigError, match="UPLOAD_CHUNK"):
        gateway.create_app({"UPLOAD_CHUNK": "1MiB"})
    monkeypatch.setenv("MEDIAGRID_OFFLINE_AFTER", "later")
    with pytest.raises(config.ConfigError, match="OFFLINE_AFTER"):
        tracker.create_app()


def test_the_agent_exits_with_the_setting_named(tmp_path: Path) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text("STALE_PART_SECONDS = -5\n")
    with pytest.raises(SystemExit, match="mediagrid-agent: setting STALE_PART_SECONDS"):
        agent.main(["--config", str(conf)])


def test_values_are_typed_once_for_app_config_and_settings(tmp_path: Path) -> None:
    app = gateway.create_app({"HEARTBEAT_INTERVAL": 2, "TRACKERS": ["http://t1"]})
    assert app.config["HEARTBEAT_INTERVAL"] == 2.0 and isinstance(app.config["HEARTBEAT_INTERVAL"], float)
    with app.app_context():
        from mediagrid.web import settings

        assert settings().heartbeat_interval == 2.0
        assert settings().trackers == ["http://t1"]


def test_string_settings_keep_their_text_from_the_environment() -> None:
    conf = config.load({"MEDIAGRID_CLUSTER_SECRET": "007", "MEDIAGRID_DB_PORT": "3307"})
    assert conf["CLUSTER_SECRET"] == "007"
    assert conf["DB_PORT"] == 3307


def test_secrets_stay_out_of_the_settings_repr() -> None:
    text = repr(config.Settings(cluster_secret="s3cret", db_password="pw", link_key="k3y"))
    assert "s3cret" not in text and "pw'" not in text and "k3y" not in text


def test_the_cli_checks_its_url_ttl_at_start() -> None:
    from mediagrid import cli

    args = cli.parser().parse_args(["--app", "demo", "token"])
    env = {"MEDIAGRID_SECRET": "s"}
    assert cli.settings(args, {**env, "MEDIAGRID_URL_TTL": "60"})["url_ttl"] == 60
    with pytest.raises(SystemExit, match=r"url_ttl .* must be whole seconds, got 'soon'"):
        cli.settings(args, {**env, "MEDIAGRID_URL_TTL": "soon"})


def test_the_cli_takes_no_secret_on_its_command_line(tmp_path: Path) -> None:
    """Issue 11, item 16: a secret in argv is visible to every user (ps) and in shell
    history; the CLI reads it from a file or stdin instead."""
    from mediagrid import cli

    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--app", "demo", "--secret", "s", "token"])
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    args = cli.parser().parse_args(["--app", "demo", "--secret-file", str(secret), "token"])
    assert cli.settings(args, {})["secret"] == "from-a-file"
