#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, starts the dev mail stack and a
# private PostgreSQL (for the PostgreSQL state store tests, EAS_TEST_PG_URL), runs every Rust
# test (unit, integration against the real Dovecot/Postfix, interop with libwbxml) and the
# pyactivesync checks; the admin pages in headless Chromium; the reverse-proxy configs with
# nginx, HAProxy and Caddy.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
"$here/mailstack.sh" start
EAS_TEST_PG_URL=$("$here/postgres.sh" start)
export EAS_TEST_PG_URL
if ! python3 -c 'import pyactivesync' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check pyactivesync
fi
# Headless Chromium and its WebDriver for tests/dashboard_browser.rs.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        chromium chromium-driver >/dev/null
fi
# nginx, HAProxy and Caddy: tests/proxy_configs.rs checks the deploy/ configs with them and
# tests/behind_proxy.rs runs the gateway behind nginx and HAProxy (private instances on free
# ports). Installed without starting their system-wide services.
missing=""
for p in nginx haproxy caddy; do
    command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        added_policy=1
    fi
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    [ "$added_policy" -eq 0 ] || rm -f "$policy"
fi
# PyYAML for the compose file check (tests/container.rs).
if ! python3 -c 'import yaml' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check pyyaml
fi
cd "$root"
cargo test --locked -- --test-threads="${EAS_TEST_THREADS:-8}"
