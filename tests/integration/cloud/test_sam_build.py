"""`sam build` of the whole application, as `sam build && sam deploy --guided` starts."""

from __future__ import annotations

import pytest
import yaml

from support.docker_engine import docker

from .conftest import BuiltApp
from .copier_run import task_user

# The first test of a session builds the stand-in base images and the whole application (minutes, cold).
pytestmark = pytest.mark.timeout(1800)


def test_sam_build_builds_every_function_the_layer_and_the_copier_image(built_app: BuiltApp) -> None:
    built = yaml.safe_load(built_app.template.read_text())
    resources = built["Resources"]
    assert resources["CopierImageFunction"]["Properties"]["ImageUri"] == built_app.copier_image
    for function in ("ListerFunction", "RecorderFunction", "DeployHelperFunction"):
        assert (built_app.build_dir / function / "app.py").is_file(), function
    assert (built_app.build_dir / "ListerFunction" / "aws_lambda_powertools").is_dir()
    assert (built_app.build_dir / "SharedLayer" / "python" / "ecr_transfer" / "cloud" / "copier_task.py").is_file()


def test_the_copier_image_runs_skopeo_1_9_3_and_the_package_as_its_non_root_user(built_app: BuiltApp) -> None:
    info = docker(built_app.engine, "image", "inspect", built_app.copier_image, "--format", "{{json .Config}}")
    config = yaml.safe_load(info.stdout)
    # No USER in the image (sam local invoke adds its emulator as root): the task definition's User.
    assert not config.get("User")
    assert task_user() == "copier"
    assert config["Entrypoint"] == ["python", "/opt/ecr-transfer/entrypoint.py"]
    probe = docker(
        built_app.engine, "run", "--rm", "--user", task_user(), "--entrypoint", "sh", built_app.copier_image, "-c",
        "id -u; skopeo --version; python -c 'import ecr_transfer.cloud.copier_task as m; print(m.__name__)'",
    )  # fmt: skip
    assert probe.stdout.split("\n")[:3] == ["10001", "skopeo version 1.9.3", "ecr_transfer.cloud.copier_task"]
