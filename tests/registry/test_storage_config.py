"""The storage settings: ``storage`` and the ``[s3]`` table, from a file and from
``REGISTRY_*`` variables, and the one-line errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import ConfigError, Settings, load_settings


def test_defaults_are_the_filesystem() -> None:
    settings = Settings()
    assert settings.storage == "filesystem"
    assert (settings.s3_bucket, settings.s3_region, settings.s3_redirect) == ("", "us-east-1",
                                                                              False)


def test_the_s3_table_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text('storage = "s3"\n[s3]\nendpoint = "http://127.0.0.1:7480"\n'
                    'bucket = "reg"\nprefix = "a/b"\npath_style = true\nredirect = true\n'
                    'region = "eu-west-1"\n')
    settings = load_settings(path, {}, {})
    assert settings.storage == "s3"
    assert settings.s3_endpoint == "http://127.0.0.1:7480"
    assert (settings.s3_bucket, settings.s3_prefix, settings.s3_region) == ("reg", "a/b",
                                                                            "eu-west-1")
    assert settings.s3_path_style and settings.s3_redirect
    assert Settings.from_json(settings.to_json()) == settings


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text('storage = "s3"\n[s3]\nbucket = "from-file"\n')
    settings = load_settings(path, {"REGISTRY_S3_BUCKET": "from-env",
                                    "REGISTRY_S3_REDIRECT": "yes"}, {})
    assert settings.s3_bucket == "from-env" and settings.s3_redirect


@pytest.mark.parametrize(("environ", "named"), [
    ({"REGISTRY_STORAGE": "azure"}, "storage must be one of filesystem, s3"),
    ({"REGISTRY_STORAGE": "s3"}, "needs s3.bucket (REGISTRY_S3_BUCKET)"),
    ({"REGISTRY_S3_ENDPOINT": "rgw:7480"}, "s3.endpoint must be an http(s) URL"),
    ({"REGISTRY_S3_PREFIX": "/abs"}, "s3.prefix must not start or end with '/'"),
    ({"REGISTRY_S3_PATH_STYLE": "maybe"}, "REGISTRY_S3_PATH_STYLE: s3_path_style must be"),
])
def test_bad_values_are_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ, {})
    assert named in str(info.value)
    assert "\n" not in str(info.value)


def test_an_unknown_key_of_the_s3_table_is_named(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text('[s3]\nbuckett = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, {}, {})
    assert "s3_buckett" in str(info.value)
