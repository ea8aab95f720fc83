#!/usr/bin/env bash
# Starts the demo mail stack and the gateway on https://127.0.0.1:8443 (self-signed
# certificate, SQLite state), in the foreground. Ctrl-C stops the gateway; the mail stack keeps
# running until `deploy/dev/mailstack.sh stop`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${EAS_DEV_DIR:-/var/lib/eas-gateway-dev}
"$here/mailstack.sh" start
gw="$dir/gateway"
mkdir -p "$gw"
if [ ! -s "$gw/cert.pem" ] || [ ! -s "$gw/key.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$gw/key.pem" -out "$gw/cert.pem" 2>/dev/null
    chmod 600 "$gw/key.pem"
fi
cat > "$gw/eas-gateway.toml" <<TOML
[server]
listen = "127.0.0.1:8443"
tls_cert = "cert.pem"
tls_key = "key.pem"
[imap]
host = "127.0.0.1"
port = 143
security = "none"
[smtp]
host = "127.0.0.1"
port = 587
security = "none"
[state]
url = "sqlite://$gw/state.db"
[identity]
domain = "example.test"
TOML
cd "$root"
cargo build --release --bin eas-gateway
echo "eas-gateway: https://127.0.0.1:8443/Microsoft-Server-ActiveSync (users alice/alice-password, bob/bob-password)"
exec "$root/target/release/eas-gateway" serve --config "$gw/eas-gateway.toml"
