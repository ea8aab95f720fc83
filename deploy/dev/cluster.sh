#!/usr/bin/env bash
# Two eas-gateway nodes on one PostgreSQL database behind nginx, on one machine: a small
# cluster for trying out and measuring several nodes. See deploy/dev/README.md.
#
# Usage: deploy/dev/cluster.sh {start|stop|status}
#
# `start` starts deploy/dev/postgres.sh and deploy/dev/mailstack.sh (each only when not
# running yet), builds the release binary, creates the database `eas_cluster` when missing,
# and starts two gateway nodes (plain HTTP on 127.0.0.1:8081 and :8082, the same
# `[state] url`, nginx as their trusted proxy) and nginx (TLS with a self-signed certificate
# on 127.0.0.1:8443, both nodes round-robin, the location settings of
# deploy/nginx/eas-gateway.conf). Everything this script writes is under one directory.
# `stop` stops the nodes and nginx (PostgreSQL and the mail stack are shared: stop them
# with their own scripts).

set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
DIR=${EAS_CLUSTER_DIR:-/tmp/eas-gateway-cluster}
PORTS=${EAS_CLUSTER_PORTS:-"8081 8082"}
HTTPS_PORT=${EAS_CLUSTER_HTTPS_PORT:-8443}
DB=${EAS_CLUSTER_DB:-eas_cluster}
NGINX=${EAS_CLUSTER_NGINX:-/usr/sbin/nginx}
BIN=${EAS_CLUSTER_BIN:-$root/target/release/eas-gateway}
PSQL=${EAS_PG_BIN:-/usr/lib/postgresql/15/bin}/psql

PROG=${0##*/}
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# alive PIDFILE -> 0 when the process it names runs
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null
}

wait_port() {
    local port=$1 what=$2 log=$3 i
    for i in $(seq 1 100); do
        port_open "$port" && return 0
        sleep 0.1
    done
    tail -n 30 "$log" >&2 || true
    die "$what did not start listening on 127.0.0.1:$port"
}

db_url() {
    # postgres://ROLE@HOST:PORT/postgres -> .../$DB
    local server
    server=$("$here/postgres.sh" url)
    printf '%s/%s\n' "${server%/*}" "$DB"
}

cmd_start() {
    mkdir -p "$DIR/nginx/tmp"
    "$here/postgres.sh" start >/dev/null
    "$here/mailstack.sh" start >/dev/null
    if [ -z "${EAS_CLUSTER_BIN:-}" ]; then
        (cd "$root" && cargo build --release --bin eas-gateway)
    fi
    [ -x "$BIN" ] || die "no gateway binary at $BIN"
    [ -x "$NGINX" ] || die "no nginx at $NGINX (apt-get install nginx)"
    local server
    server=$("$here/postgres.sh" url)
    if ! "$PSQL" "$server" -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
        "$PSQL" "$server" -qc "CREATE DATABASE $DB" || die "cannot create database $DB"
    fi
    if [ ! -s "$DIR/cert.pem" ] || [ ! -s "$DIR/key.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
            -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
            -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
        chmod 600 "$DIR/key.pem"
    fi
    local url upstreams="" n=0 port
    url=$(db_url)
    for port in $PORTS; do
        n=$((n + 1))
        upstreams="$upstreams        server 127.0.0.1:$port;
"
        if alive "$DIR/node$n.pid"; then
            say "node$n already running"
            continue
        fi
        port_open "$port" && die "127.0.0.1:$port is taken (set EAS_CLUSTER_PORTS)"
        cat >"$DIR/node$n.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
trusted_proxies = ["127.0.0.1"]
[imap]
host = "127.0.0.1"
port = 143
security = "none"
[smtp]
host = "127.0.0.1"
port = 587
security = "none"
[state]
url = "$url"
[identity]
domain = "example.test"
[cluster]
node_id = "node$n"
TOML
        nohup "$BIN" serve --config "$DIR/node$n.toml" >"$DIR/node$n.log" 2>&1 &
        echo $! >"$DIR/node$n.pid"
        wait_port "$port" "node$n" "$DIR/node$n.log"
        say "node$n on 127.0.0.1:$port (log $DIR/node$n.log)"
    done
    cat >"$DIR/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log $DIR/nginx/access.log;
    client_body_temp_path $DIR/nginx/tmp/body;
    proxy_temp_path $DIR/nginx/tmp/proxy;
    fastcgi_temp_path $DIR/nginx/tmp/fastcgi;
    uwsgi_temp_path $DIR/nginx/tmp/uwsgi;
    scgi_temp_path $DIR/nginx/tmp/scgi;
    upstream eas_gateway {
$upstreams        keepalive 64;
    }
    server {
        listen 127.0.0.1:$HTTPS_PORT ssl;
        ssl_certificate $DIR/cert.pem;
        ssl_certificate_key $DIR/key.pem;
        # As deploy/nginx/eas-gateway.conf: a Ping or hanging Sync may wait an hour, and
        # responses stream.
        location /Microsoft-Server-ActiveSync {
            proxy_pass http://eas_gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
            proxy_request_buffering off;
            gzip off;
            client_max_body_size 64m;
        }
        location ~* ^/autodiscover/ {
            proxy_pass http://eas_gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            client_max_body_size 64k;
        }
        location / {
            return 404;
        }
    }
}
NGINX
    if alive "$DIR/nginx/nginx.pid"; then
        "$NGINX" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -s reload
        say "nginx reloaded"
    else
        port_open "$HTTPS_PORT" && die "127.0.0.1:$HTTPS_PORT is taken (set EAS_CLUSTER_HTTPS_PORT)"
        "$NGINX" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" ||
            { tail -n 20 "$DIR/nginx/error.log" >&2 || true; die "nginx did not start"; }
        wait_port "$HTTPS_PORT" nginx "$DIR/nginx/error.log"
    fi
    say "https://127.0.0.1:$HTTPS_PORT/Microsoft-Server-ActiveSync -> nodes on $PORTS (state in $DIR)"
}

cmd_stop() {
    local f
    if alive "$DIR/nginx/nginx.pid"; then
        "$NGINX" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -s quit
        say "nginx stopped"
    fi
    for f in "$DIR"/node*.pid; do
        [ -e "$f" ] || continue
        if alive "$f"; then
            kill "$(cat "$f")"
            say "$(basename "$f" .pid) stopped"
        fi
        rm -f "$f"
    done
}

cmd_status() {
    local rc=0 f
    for f in "$DIR"/node*.pid; do
        [ -e "$f" ] || continue
        if alive "$f"; then say "$(basename "$f" .pid): running (pid $(cat "$f"))"
        else say "$(basename "$f" .pid): not running"; rc=3; fi
    done
    if alive "$DIR/nginx/nginx.pid"; then say "nginx: running on 127.0.0.1:$HTTPS_PORT"
    else say "nginx: not running"; rc=3; fi
    "$here/postgres.sh" status >/dev/null 2>&1 && say "postgres: running" || { say "postgres: not running"; rc=3; }
    return $rc
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $PROG {start|stop|status}" >&2; exit 2 ;;
esac
