#!/usr/bin/env bash
# The dashboard's browser tests (tests/ui/test_browser.py) drive Debian's headless chromium through chromedriver.
# Install both when they are missing and we may (root, apt-get present); otherwise say so and let the tests skip.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure_browser: chromium/chromedriver missing and cannot apt-get install them (not root or no apt-get);" \
         "the browser tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
