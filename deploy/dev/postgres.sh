#!/usr/bin/env bash
# Private PostgreSQL cluster for eas-gateway development and tests.
#
# Runs Debian's PostgreSQL 15 server binaries on a cluster whose data, socket and log all
# live under one directory, independent of any system-wide cluster: 127.0.0.1 only, trust
# authentication (no password) for the loopback, no TLS. The server runs as the `postgres`
# system user (PostgreSQL refuses to run as root). See deploy/dev/README.md.
#
# Usage: deploy/dev/postgres.sh {start|stop|status|url}
#
# `start` installs postgresql-15 when missing (as root), creates the cluster on first use,
# starts it and prints the URL; `url` prints the URL only. Tests read it from
# EAS_TEST_PG_URL and create one database per test.

set -eu

# ---------------------------------------------------------------------------
# Settings (overridable from the environment)
# ---------------------------------------------------------------------------
PG_DIR=${EAS_PG_DIR:-/tmp/eas-gateway-pg}
case $PG_DIR in
    /*) ;;
    *) PG_DIR=$PWD/$PG_DIR ;;
esac
PG_DIR=${PG_DIR%/}
PG_BIN=${EAS_PG_BIN:-/usr/lib/postgresql/15/bin}
LISTEN_ADDR=127.0.0.1
PG_PORT=${EAS_PG_PORT:-55432}
PG_OS_USER=${EAS_PG_OS_USER:-postgres}
# The database role the gateway and the tests connect as (a superuser of this private
# cluster: tests create and drop databases).
PG_ROLE=postgres
START_TIMEOUT=${EAS_PG_START_TIMEOUT:-60}

PACKAGES="postgresql-15"

DATA_DIR=$PG_DIR/data
SOCKET_DIR=$PG_DIR/run
LOG_FILE=$PG_DIR/postgres.log

PROG=${0##*/}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

url() { printf 'postgres://%s@%s:%s/postgres\n' "$PG_ROLE" "$LISTEN_ADDR" "$PG_PORT"; }

# as_pg COMMAND... : run COMMAND as the cluster's OS user
as_pg() {
    if [ "$(id -un)" = "$PG_OS_USER" ]; then
        "$@"
    else
        [ "$(id -u)" -eq 0 ] || die "run as root or as $PG_OS_USER"
        runuser -u "$PG_OS_USER" -- "$@"
    fi
}

# port_open -> 0 if something accepts TCP connections on LISTEN_ADDR:PG_PORT
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$LISTEN_ADDR" "$PG_PORT" 2>/dev/null
}

pg_ready() {
    as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1
}

install_packages() {
    [ -x "$PG_BIN/postgres" ] && return 0
    [ "$(id -u)" -eq 0 ] || die "$PG_BIN/postgres is missing (install $PACKAGES as root)"
    command -v apt-get >/dev/null 2>&1 || die "missing $PACKAGES (and no apt-get to install it)"
    say "installing Debian packages: $PACKAGES"
    # Keep the package's maintainer scripts from starting the system-wide cluster (they
    # may create it, stopped): this script runs its own.
    local policy=/usr/sbin/policy-rc.d backup=""
    if [ -e "$policy" ]; then
        backup=$(mktemp /usr/sbin/.policy-rc.d.eas-pg.XXXXXX)
        cp -a "$policy" "$backup"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    { apt-get update -q && apt-get install -y -q --no-install-recommends $PACKAGES; } || rc=$?
    if [ -n "$backup" ]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die "apt-get install failed for: $PACKAGES"
    [ -x "$PG_BIN/postgres" ] || die "$PG_BIN/postgres still missing after installing $PACKAGES"
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
cmd_start() {
    install_packages
    getent passwd "$PG_OS_USER" >/dev/null || die "OS user $PG_OS_USER is missing"
    if pg_ready; then
        url
        return 0
    fi
    if port_open; then
        die "$LISTEN_ADDR:$PG_PORT is taken by another program (set EAS_PG_PORT)"
    fi
    if [ "$(id -u)" -eq 0 ]; then
        mkdir -p "$PG_DIR"
        chown "$PG_OS_USER" "$PG_DIR"
        chmod 0755 "$PG_DIR"
    else
        mkdir -p "$PG_DIR"
    fi
    if [ ! -s "$DATA_DIR/PG_VERSION" ]; then
        say "creating cluster in $DATA_DIR"
        rm -rf "$DATA_DIR"
        as_pg "$PG_BIN/initdb" -D "$DATA_DIR" -U "$PG_ROLE" --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
            { tail -n 20 "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
        # Loopback only, trust: a private cluster for development and tests.
        cat >"$DATA_DIR/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
        [ "$(id -u)" -ne 0 ] || chown "$PG_OS_USER" "$DATA_DIR/pg_hba.conf"
    fi
    as_pg mkdir -p "$SOCKET_DIR"
    # fsync off: a throw-away cluster; a crash only loses test data.
    as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t "$START_TIMEOUT" \
        -o "-c listen_addresses=$LISTEN_ADDR -p $PG_PORT -k $SOCKET_DIR -c fsync=off \
            -c max_connections=400 -c shared_buffers=64MB" \
        start >/dev/null ||
        { tail -n 40 "$LOG_FILE" >&2 || true; die "PostgreSQL did not start"; }
    say "PostgreSQL running on $LISTEN_ADDR:$PG_PORT (data in $DATA_DIR)"
    url
}

cmd_stop() {
    if pg_ready; then
        as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast -w stop >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

cmd_status() {
    if pg_ready; then
        say "running on $LISTEN_ADDR:$PG_PORT (data in $DATA_DIR)"
        url
    else
        say "not running"
        exit 3
    fi
}

usage() {
    cat <<EOF
usage: $PROG COMMAND
  start    install postgresql-15 if needed, create the cluster on first use, start it,
           print the URL
  stop     stop the cluster started by this script
  status   show whether it runs (exit 3 if not)
  url      print the URL (postgres://$PG_ROLE@$LISTEN_ADDR:$PG_PORT/postgres)
state directory: \${EAS_PG_DIR:-/tmp/eas-gateway-pg} (now: $PG_DIR), port \${EAS_PG_PORT:-55432}
EOF
}

main() {
    [ $# -ge 1 ] || { usage >&2; exit 2; }
    case $1 in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        url) url ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
