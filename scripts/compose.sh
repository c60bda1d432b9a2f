#!/bin/sh
# Debian's docker-compose, so tests/unit/test_deploy.py can validate docker-compose.yml with
# `docker-compose config -q` (no engine needed). Idempotent and quiet, like browser.sh.
set -eu
command -v docker-compose >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/compose.sh: docker-compose is missing; as root: apt-get install -y docker-compose" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
