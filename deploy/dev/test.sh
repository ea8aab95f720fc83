#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, starts the dev mail stack and a
# private PostgreSQL (for the PostgreSQL state store tests, EAS_TEST_PG_URL), runs every Rust
# test (unit, integration against the real Dovecot/Postfix, interop with libwbxml) and the
# pyactivesync checks; the admin pages in headless Chromium.
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
cd "$root"
cargo test --locked -- --test-threads="${EAS_TEST_THREADS:-8}"
