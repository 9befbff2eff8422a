"""Stand-ins for the base images the product names, built from Debian packages on this machine.

No container registry is reachable here, so `python:3.12.11-slim-bookworm` (the copier's base)
and `public.ecr.aws/lambda/python:3.12` (SAM's `sam local` base) cannot be pulled. The tests
build look-alikes and tag them with those names, in the tests' private engine only
(support.docker_engine): a Debian bookworm minbase root (debootstrap), the machine's own CPython
3.12 at the path it was built for (it finds its libpython by rpath), and this machine's CA bundle,
so that apt and pip inside image builds trust whatever TLS the machine's network presents (as
behind a corporate TLS-inspecting proxy). On a user's machine the real images are pulled and
nothing here is used; the product's Dockerfile and template are the same in both cases.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from support.docker_engine import Engine, docker

PYTHON_BASE = "python:3.12.11-slim-bookworm"
LAMBDA_BASES = ("public.ecr.aws/lambda/python:3.12", "public.ecr.aws/lambda/python:3.12-x86_64")
MIRROR = os.environ.get("ECR_TRANSFER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
RECIPE_LABEL = "org.ecr-transfer.standin-recipe"
# What a CPython build links against beyond libc: the modules the product and pip import.
RUNTIME_LIBS = "ca-certificates,libssl3,libffi8,libsqlite3-0,zlib1g,libbz2-1.0,liblzma5,libexpat1,libuuid1,libreadline8"

LAMBDA_BOOTSTRAP = """#!/bin/sh
# Stand-in for the Lambda Python runtime's bootstrap: the runtime interface emulator (which SAM
# adds as the entrypoint) starts this, and it runs the handler through the runtime interface client.
PYTHONPATH="/var/task:/opt/python/lib/python3.12/site-packages:/opt/python:/var/runtime"
export PYTHONPATH
exec /usr/local/bin/python3 -m awslambdaric "${_HANDLER:-$AWS_LAMBDA_FUNCTION_HANDLER}"
"""

LAMBDA_DOCKERFILE = f"""FROM {PYTHON_BASE}
RUN python3 -m pip install --no-cache-dir --disable-pip-version-check --target /var/runtime awslambdaric boto3
COPY bootstrap /var/runtime/bootstrap
RUN chmod 755 /var/runtime/bootstrap && mkdir -p /var/task /opt
ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
ENTRYPOINT ["/var/runtime/bootstrap"]
"""


def python312_prefix() -> Path | None:
    """A self-contained CPython 3.12 installation (pyenv's, as on these machines), or None."""
    candidates = []
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "prefix", "3.12.1"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    exe = shutil.which("python3.12")
    if exe:
        out = subprocess.run([exe, "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True)
        candidates.append(Path(out.stdout.strip()))
    for prefix in candidates:
        # /usr would drag the whole system along: only a prefix of its own will do.
        if prefix != Path("/usr") and (prefix / "bin" / "python3.12").exists():
            return prefix
    return None


def unavailable_reason() -> str | None:
    if python312_prefix() is None:
        return "needs a self-contained Python 3.12 (pyenv install 3.12) to build the stand-in base images"
    return None


def _recipe(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _has(engine: Engine, image: str, recipe: str) -> bool:
    out = docker(engine, "image", "inspect", "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}', image,
                 check=False)  # fmt: skip
    return out.returncode == 0 and out.stdout.strip() == recipe


def _python_root(root: Path, prefix: Path) -> None:
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={RUNTIME_LIBS}", "bookworm", str(root), MIRROR],
        check=True,
        capture_output=True,
        timeout=900,
    )
    target = root / prefix.relative_to("/")
    shutil.copytree(
        prefix,
        target,
        symlinks=True,
        # The test suite and this machine's own start-up hooks are not part of a Python base image.
        ignore=shutil.ignore_patterns("test", "__pycache__", "_sandboxing*.pth", "*.pyc"),
    )
    # pyenv lives under /root (mode 0700): the copier runs as a non-root user and must reach it.
    for parent in [target, *target.parents]:
        if parent == root:
            break
        parent.chmod(0o755)
    bindir = root / "usr/local/bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name, real in (("python", "python3.12"), ("python3", "python3.12"), ("python3.12", "python3.12"),
                       ("pip", "pip3.12"), ("pip3", "pip3.12")):  # fmt: skip
        (bindir / name).symlink_to(prefix / "bin" / real)
    extra = root / "usr/local/share/ca-certificates"
    extra.mkdir(parents=True, exist_ok=True)
    # Kept there too, so that `apt-get install ca-certificates` in a Dockerfile (which rebuilds
    # the bundle) keeps trusting what this machine trusts.
    shutil.copy(CA_BUNDLE, extra / "build-host-bundle.crt")
    shutil.copy(CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
    (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    (root / "etc/apt/sources.list").write_text(f"deb {MIRROR} bookworm main\ndeb {MIRROR} bookworm-updates main\n")


def ensure_python_base(engine: Engine) -> str:
    prefix = python312_prefix()
    assert prefix is not None, unavailable_reason()
    recipe = _recipe(PYTHON_BASE, str(prefix), RUNTIME_LIBS, MIRROR, Path(__file__).read_text())
    if _has(engine, PYTHON_BASE, recipe):
        return PYTHON_BASE
    with tempfile.TemporaryDirectory(prefix="ecr-transfer-standin-") as tmp:
        root = Path(tmp) / "root"
        _python_root(root, prefix)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        changes = [
            "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
            f"LABEL {RECIPE_LABEL}={recipe}",
        ]
        args = ["docker", "import", *[a for c in changes for a in ("--change", c)], "-", PYTHON_BASE]
        subprocess.run(args, stdin=tar.stdout, env=engine.env(), check=True, capture_output=True, timeout=600)
        assert tar.wait() == 0
    return PYTHON_BASE


def ensure_lambda_base(engine: Engine) -> str:
    ensure_python_base(engine)
    recipe = _recipe(LAMBDA_DOCKERFILE, LAMBDA_BOOTSTRAP, Path(__file__).read_text())
    if all(_has(engine, tag, recipe) for tag in LAMBDA_BASES):
        return LAMBDA_BASES[0]
    with tempfile.TemporaryDirectory(prefix="ecr-transfer-standin-") as tmp:
        ctx = Path(tmp)
        (ctx / "Dockerfile").write_text(LAMBDA_DOCKERFILE + f"LABEL {RECIPE_LABEL}={recipe}\n")
        (ctx / "bootstrap").write_text(LAMBDA_BOOTSTRAP)
        tags = [a for tag in LAMBDA_BASES for a in ("-t", tag)]
        docker(engine, "build", "-q", *tags, str(ctx), timeout=900)
    return LAMBDA_BASES[0]
