from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import SettingsError
from appliance.settings import load_settings


def test_defaults_use_the_home_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(environ={"APPLIANCE_HOME": str(tmp_path)})
    assert settings.home == tmp_path
    assert settings.host == "127.0.0.1"
    assert settings.port == 11434
    assert settings.load_plugins is None
    assert settings.db_path == tmp_path / "appliance.db"


def test_default_home_is_under_the_users_data_directory(tmp_path: Path) -> None:
    settings = load_settings(environ={"XDG_DATA_HOME": str(tmp_path)})
    assert settings.home == tmp_path / "appliance"


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    (tmp_path / "appliance.toml").write_text('port = 9000\nhost = "0.0.0.0"\nqueue_size = 3\n')
    env = {"APPLIANCE_HOME": str(tmp_path), "APPLIANCE_PORT": "9001"}
    settings = load_settings({"host": "127.0.0.2"}, environ=env)
    assert settings.port == 9001  # environment beats the file
    assert settings.host == "127.0.0.2"  # a flag beats both
    assert settings.queue_size == 3  # the file beats the default


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings({"home": tmp_path}, environ={})
    with pytest.raises(ValueError):
        settings.port = 1  # type: ignore[misc]


def test_load_plugins_list_forms(tmp_path: Path) -> None:
    base = {"APPLIANCE_HOME": str(tmp_path)}
    assert load_settings(environ={**base, "APPLIANCE_LOAD_PLUGINS": ""}).load_plugins == ()
    both = load_settings(environ={**base, "APPLIANCE_LOAD_PLUGINS": "echo, llama"})
    assert both.load_plugins == ("echo", "llama")


def test_invalid_env_value_names_the_key_and_variable(tmp_path: Path) -> None:
    env = {"APPLIANCE_HOME": str(tmp_path), "APPLIANCE_PORT": "eleven"}
    with pytest.raises(SettingsError) as info:
        load_settings(environ=env)
    assert "'port'" in info.value.message
    assert "APPLIANCE_PORT" in info.value.message


def test_out_of_range_value_in_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "appliance.toml").write_text("port = 70000\n")
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"APPLIANCE_HOME": str(tmp_path)})
    assert "'port'" in info.value.message
    assert "appliance.toml" in info.value.message


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "appliance.toml").write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'prot'"):
        load_settings(environ={"APPLIANCE_HOME": str(tmp_path)})


def test_broken_toml_is_reported_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "appliance.toml").write_text("port = = 1\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(environ={"APPLIANCE_HOME": str(tmp_path)})


def test_bad_log_level(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="log_level"):
        load_settings({"home": tmp_path, "log_level": "chatty"}, environ={})
