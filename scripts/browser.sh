#!/bin/sh
# Debian's Chromium for the browser tests (tests/e2e/test_console.py). Idempotent and quiet:
# nothing happens when /usr/bin/chromium is there. Playwright drives this binary; its own browser
# download (`playwright install`) cannot reach its CDN from here, so it is never used.
set -eu
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/browser.sh: /usr/bin/chromium is missing; as root: apt-get install -y chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
