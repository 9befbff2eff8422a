#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine (run as root, or with sudo available):
# system packages the product and its tests drive for real, then a virtualenv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
# The cloud-path tests build and run the copier image and `sam local invoke` in a Docker engine
# of their own (tests/support/docker_engine.py); debootstrap builds the stand-in base images.
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v ip >/dev/null || need_apt+=(iproute2)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian docker-registry package starts a system-wide registry on :5000; the product and
# the tests start their own on free loopback ports, so the system one is not needed.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

# The SAM CLI pins an older boto3 than moto and the product want, so it lives in its own venv.
# Tests use it for `sam validate --lint` and `sam build` of the zip functions.
if [ ! -x .venv-sam/bin/sam ]; then
  python3 -m venv .venv-sam
  .venv-sam/bin/python -m pip install -q --upgrade pip
  .venv-sam/bin/python -m pip install -q 'aws-sam-cli>=1.120'
fi
