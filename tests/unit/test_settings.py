from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecr_transfer.errors import ConfigError
from ecr_transfer.settings import env_name, from_mapping, load_env, load_yaml

BASE = {"sourceType": "Public", "srcImageList": "nginx", "destType": "Registry", "destRegistry": "127.0.0.1:5001"}


def test_dth_names_and_defaults() -> None:
    s = from_mapping({**BASE, "destPrefix": "/mirror/", "includeUntagged": "false", "concurrency": "4"})
    assert s.dest_prefix == "mirror"
    assert s.include_untagged is False
    assert s.concurrency == 4
    assert s.src_list == "SELECTED"


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({**BASE, "destPerfix": "x"})
    assert info.value.problems == ["unknown setting 'destPerfix' (did you mean 'destPrefix'?)"]


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({"sourceType": "Amazon_ECR", "srcList": "ALL", "destType": "Amazon_ECR"})
    assert info.value.problems == [
        "srcRegion is required when sourceType is Amazon_ECR",
        "destRegion is required when destType is Amazon_ECR",
    ]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"sourceType": "Docker"}, "sourceType: must be one of Amazon_ECR, Public; got 'Docker'"),
        ({"concurrency": 0}, "concurrency: must be between 1 and 100; got 0"),
        ({"includeUntagged": "maybe"}, "includeUntagged: expected true or false, got 'maybe'"),
        ({"destAccountId": "12345"}, "destAccountId: must be a 12-digit AWS account id; got '12345'"),
        ({"destPrefix": "My Prefix"}, "destPrefix: 'My Prefix' would make invalid repository names"),
        ({"srcList": "ALL"}, "srcList ALL needs sourceType Amazon_ECR"),
        ({"srcImageList": ""}, "srcImageList is empty but srcList is SELECTED"),
        ({"srcImageList": "ok\nBAD"}, "srcImageList line 2: 'BAD': invalid repository name component 'BAD'"),
        ({"destRegistry": None}, "destRegistry (host[:port]) is required when destType is Registry"),
    ],
)
def test_a_bad_setting_value_is_a_configuration_error_naming_it(extra: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({**BASE, **extra})
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sourceType: Public\n  srcImageList: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line 2: not valid YAML"):
        load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings, got str"):
        load_yaml(scalar)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_yaml(tmp_path / "missing.yaml")


def test_the_image_list_may_be_a_yaml_list(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sourceType: Public\nsrcImageList:\n  - nginx\n  - quay.io/a/b:1\ndestType: Registry\n"
        "destRegistry: localhost:5000\ninsecureRegistries: [localhost:5000]\n"
    )
    s = load_yaml(cfg)
    assert s.src_image_list == "nginx\nquay.io/a/b:1"
    assert s.insecure_registries == ("localhost:5000",)


def test_env_loading_with_ssm_loader() -> None:
    assert env_name("srcImageList") == "SRC_IMAGE_LIST"
    env = {
        "SOURCE_TYPE": "Amazon_ECR",
        "SRC_REGION": "us-east-1",
        "DEST_REGION": "cn-north-1",
        "SRC_IMAGE_LIST_PARAMETER": "/x/list",
        "INSECURE_REGISTRIES": "a:1,b:2",
        "UNRELATED": "ignored",
    }
    s = load_env(env, image_list_loader=lambda name: "app:1\nteam/other" if name == "/x/list" else "")
    assert s.src_image_list == "app:1\nteam/other"
    assert s.insecure_registries == ("a:1", "b:2")


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_registry_ca_bundles_come_from_their_own_ssm_parameter() -> None:
    """The stack keeps PEM texts in SSM: a Lambda's environment holds only 4 KB."""
    params = {"/x/cas": json.dumps({"harbor.corp:8443": PEM}), "/x/list": "harbor.corp:8443/app:1"}
    env = {"SOURCE_TYPE": "Public", "DEST_REGION": "cn-north-1", "SRC_IMAGE_LIST_PARAMETER": "/x/list"}
    env["REGISTRY_CA_PARAMETER"] = "/x/cas"
    assert load_env(env, image_list_loader=params.__getitem__).registry_ca_bundles == {"harbor.corp:8443": PEM}
    # Bundles set directly win; an empty parameter name means none.
    direct = {**env, "REGISTRY_CA_BUNDLES": json.dumps({"other:5000": PEM})}
    assert load_env(direct, image_list_loader=params.__getitem__).registry_ca_bundles == {"other:5000": PEM}
    unset = {**env, "REGISTRY_CA_PARAMETER": ""}
    assert load_env(unset, image_list_loader=params.__getitem__).registry_ca_bundles == {}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{not json", "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1); "
         "expected a JSON object of host[:port] to PEM text"),
        ('{"harbor.corp:8443": "a path?"}', "no PEM certificate for harbor.corp:8443"),
    ],
)  # fmt: skip
def test_a_malformed_ca_parameter_is_a_configuration_error_naming_it(value: str, problem: str) -> None:
    env = {"SOURCE_TYPE": "Public", "DEST_REGION": "cn-north-1", "SRC_IMAGE_LIST": "a.io/app:1"}
    env["REGISTRY_CA_PARAMETER"] = "/x/cas"
    with pytest.raises(ConfigError) as caught:
        load_env(env, image_list_loader=lambda name: value)
    assert caught.value.problems == [f"SSM parameter /x/cas (REGISTRY_CA_PARAMETER): {problem}"]
