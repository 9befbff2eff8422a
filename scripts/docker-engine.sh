#!/usr/bin/env bash
# The tests' private Docker engine (tests/support/docker_engine.py starts it on demand):
#   scripts/docker-engine.sh start|stop|env
# It has its own socket, data root and exec root, so it never touches a Docker you run yourself:
# the tests tag stand-in base images with real names (python:3.12..., public.ecr.aws/lambda/...).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || py=python3
case "${1:-}" in
  start) PYTHONPATH=tests "$py" -c 'from support import docker_engine as d; print(d.ensure().host)' ;;
  stop) PYTHONPATH=tests "$py" -c 'from support import docker_engine as d; d.stop()' ;;
  env) PYTHONPATH=tests "$py" -c 'from support import docker_engine as d; print(f"export DOCKER_HOST={d.DOCKER_HOST}")' ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
