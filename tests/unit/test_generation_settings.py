"""Settings of the generation services, and the `image` generator's params schema."""

from __future__ import annotations

import pytest

from app import generators
from app.config import Settings
from app.errors import ValidationFailed


def test_breaker_timeout_and_artifact_settings_read_the_environment():
    s = Settings.from_env({"BREAKER_FAIL_MAX": "2", "BREAKER_RESET_TIMEOUT_S": "4.5",
                           "HTTP_CONNECT_TIMEOUT_S": "1", "HTTP_READ_TIMEOUT_S": "2.5",
                           "ARTIFACT_STORE": "filesystem", "ARTIFACT_DIR": "/srv/artifacts"})
    assert (s.breaker_fail_max, s.breaker_reset_timeout_s) == (2, 4.5)
    assert (s.http_connect_timeout_s, s.http_read_timeout_s) == (1.0, 2.5)
    assert (s.artifact_store, s.artifact_dir) == ("filesystem", "/srv/artifacts")
    assert Settings.from_env(s.as_env()) == s
    d = Settings.from_env({})
    assert (d.breaker_fail_max, d.breaker_reset_timeout_s, d.artifact_store) == (5, 30.0,
                                                                                "postgres")


def test_an_unknown_artifact_store_is_refused_at_start():
    with pytest.raises(ValueError, match="ARTIFACT_STORE"):
        Settings.from_env({"ARTIFACT_STORE": "s3"})


@pytest.mark.parametrize("params", [
    {"width": 2048, "height": 1},
    {"width": 10, "height": 10, "background": "#AbCdEf", "text": "x", "font_size": 12,
     "shapes": [{"type": "line", "xy": [0, 0, 9, 9], "fill": "#000000", "width": 2}]},
])
def test_image_params_accepted(params):
    generators.validate_params("image", params)


@pytest.mark.parametrize("params,field", [
    ({"width": 2049, "height": 1}, "params.width"),
    ({"width": 0, "height": 1}, "params.width"),
    ({"width": 1, "height": 1, "text_color": "#fff"}, "params.text_color"),
    ({"width": 1, "height": 1, "shapes": [{"type": "line", "xy": [0, 0]}]}, "params.shapes.0.xy"),
    ({"width": 1, "height": 1, "depth": 3}, "params"),
])
def test_image_params_refused_field_by_field(params, field):
    with pytest.raises(ValidationFailed) as exc:
        generators.validate_params("image", params)
    assert field in exc.value.details
