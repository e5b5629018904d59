#!/bin/sh
# Make sure Debian's chromium is there for the browser tests (tests/browser/).
# As root on a fresh machine it installs the package; as another user it only reports, and the
# browser tests then skip (they cannot install it). Never runs `playwright install`.
set -e
CHROMIUM=${KMEM_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    echo "ensure-chromium: installing Debian's chromium for the browser tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    exit 0
fi
echo "ensure-chromium: $CHROMIUM is missing and we are not root: browser tests will skip" >&2
