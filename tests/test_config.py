"""Settings from the environment: what they accept and how they refuse."""

import pytest

from config import Config


@pytest.mark.parametrize(("raw", "value"), [(None, False), ("", False), ("true", True),
                                            ("ON", True), ("1", True), ("no", False)])
def test_compression_is_a_yes_or_no_setting_and_off_unless_asked(raw, value):
    environ = {} if raw is None else {"VMS_WS_COMPRESSION": raw}
    assert Config(environ).VMS_WS_COMPRESSION is value


def test_a_setting_that_is_not_yes_or_no_is_refused_by_name():
    with pytest.raises(ValueError, match="VMS_WS_COMPRESSION must be true or false, got 'maybe'"):
        Config({"VMS_WS_COMPRESSION": "maybe"})


def test_the_ping_interval_is_configurable_and_must_be_positive():
    assert Config({}).SOCK_SERVER_OPTIONS["ping_interval"] == 25
    assert Config({"VMS_WS_PING_INTERVAL": "0.5"}).SOCK_SERVER_OPTIONS["ping_interval"] == 0.5
    with pytest.raises(ValueError, match="VMS_WS_PING_INTERVAL"):
        Config({"VMS_WS_PING_INTERVAL": "0"})
