"""Config validation: clear errors naming the field, secrets never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from repo_updater.config import ConfigError, load_config, parse_config, token_for
from repo_updater.core.domain import HostKind

GOOD = {
    "database": "sqlite:///x.db",
    "external_services": [
        {
            "name": "gh",
            "kind": "github",
            "url": "https://api.github.com/",
            "token_env": "GH_TOKEN",
            "orgs": ["acme"],
            "exclude": ["acme/old-*"],
        },
        {"name": "gl", "kind": "gitlab", "url": "https://gitlab.example.com", "repos": ["g/sub/p"]},
    ],
}


def test_valid_config_parses_with_defaults_and_selection() -> None:
    cfg = parse_config(GOOD, {"GH_TOKEN": "s3cret"})
    gh, gl = cfg.external_services
    assert gh.kind is HostKind.GITHUB and gh.url == "https://api.github.com"
    assert gh.prefix == "github.com" and gl.prefix == "gitlab.example.com"
    assert gh.selection.excluded("acme/old-thing") and not gh.selection.excluded("acme/new")
    assert cfg.interval_for(gh) == 60.0
    assert token_for(gh, {"GH_TOKEN": "s3cret"}) == "s3cret" and token_for(gl, {}) is None


@pytest.mark.parametrize(
    ("patch", "field", "message"),
    [
        ({"kind": "svn"}, "external_services.0.kind", "Input should be"),
        ({"url": "ftp://x"}, "external_services.0.url", "http:// or https://"),
        ({"url": "https://user:pw@host"}, "external_services.0.url", "credentials"),
        ({"orgs": [], "repos": []}, "external_services.0", "selects no repositories"),
        ({"repos": ["justaname"]}, "external_services.0.repos", "not a full name"),
        ({"name": "bad name!"}, "external_services.0.name", "letters, digits"),
        ({"sync_interval": -5}, "external_services.0.sync_interval", "greater than 0"),
        ({"tokn_env": "X"}, "external_services.0.tokn_env", "Extra inputs"),
    ],
)
def test_invalid_service_field_is_named(patch: dict[str, object], field: str, message: str) -> None:
    svc = {**GOOD["external_services"][0], **patch}  # type: ignore[dict-item]
    with pytest.raises(ConfigError) as err:
        parse_config({"external_services": [svc]}, {"GH_TOKEN": "t"})
    assert f"{field}: " in str(err.value) and message in str(err.value)


def test_duplicate_service_names_are_rejected() -> None:
    svc = GOOD["external_services"][1]
    with pytest.raises(ConfigError, match=r"external_services.1.name: duplicate name 'gl'"):
        parse_config({"external_services": [svc, svc]}, {})


def test_missing_token_env_names_the_variable_not_a_value() -> None:
    with pytest.raises(ConfigError, match="GH_TOKEN is not set"):
        parse_config(GOOD, {})


def test_unknown_top_level_key_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="databse: Extra inputs"):
        parse_config({"databse": "x"}, {})
    bad = tmp_path / "c.yaml"
    bad.write_text("external_services: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, {})
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml", {})


def test_a_list_at_the_top_level_is_rejected() -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config(["x"], {})


@pytest.mark.parametrize(
    ("patch", "field", "message"),
    [
        # Issue 7.5: a repos entry is put in a request path sent with the token.
        ({"repos": ["../../_admin/state"]}, "external_services.0.repos", "'..'"),
        ({"repos": ["acme/../../_admin"]}, "external_services.0.repos", "'..'"),
        ({"repos": ["acme//tools"]}, "external_services.0.repos", "empty segments"),
        ({"repos": ["acme/./tools"]}, "external_services.0.repos", "'.'"),
        ({"repos": ["acme\\..\\x/y"]}, "external_services.0.repos", "'..'"),
        ({"orgs": [".."]}, "external_services.0.orgs", "'..'"),
        ({"orgs": ["group//sub"]}, "external_services.0.orgs", "'//'"),
        ({"orgs": [""]}, "external_services.0.orgs", "must not be empty"),
        # Credentials anywhere in the URL would show in `services list` and the logs.
        ({"url": "https://host/api?private_token=s3cret"}, "external_services.0.url", "query"),
        ({"url": "https://host/#token=s3cret"}, "external_services.0.url", "fragment"),
        ({"url": "https://host/?"}, "external_services.0.url", "query"),
        ({"url": "https://s3cret@host"}, "external_services.0.url", "credentials"),
        ({"url": "https://host:99999"}, "external_services.0.url", "invalid port"),
        ({"url": "https://host:0"}, "external_services.0.url", "invalid port"),
        ({"url": "https://host:http"}, "external_services.0.url", "invalid port"),
        ({"url": "https://host/a/../b"}, "external_services.0.url", "'..'"),
        ({"url": "https://:443"}, "external_services.0.url", "http:// or https://"),
    ],
)
def test_unsafe_selection_and_url_are_rejected_naming_the_field(
    patch: dict[str, object], field: str, message: str
) -> None:
    svc = {**GOOD["external_services"][0], **patch}  # type: ignore[dict-item]
    with pytest.raises(ConfigError) as err:
        parse_config({"external_services": [svc]}, {"GH_TOKEN": "t"})
    text = str(err.value)
    assert f"{field}: " in text and message in text, text
    assert "s3cret" not in text, "the error does not echo the secret"


def test_safe_names_ports_and_subgroups_are_accepted() -> None:
    svc = {
        **GOOD["external_services"][1],  # type: ignore[dict-item]
        "url": "https://gitlab.example.com:8443/gitlab/",
        "orgs": ["platform/tools", "/lead-slash-ok/"],
        "repos": ["g/sub/p", "acme/my.repo-1"],
    }
    (gl,) = parse_config({"external_services": [svc]}, {}).external_services
    assert gl.url == "https://gitlab.example.com:8443/gitlab"
    assert gl.repos == ("g/sub/p", "acme/my.repo-1")
