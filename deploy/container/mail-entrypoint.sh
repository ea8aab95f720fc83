#!/bin/bash
# Starts the dev mail stack, writes the demo gateway's certificate and admin token into the
# shared volume (readable by the gateway's user, uid 10001), then follows the mail logs.
set -eu
dir=/var/lib/eas-gateway-dev
/opt/eas-dev/mailstack.sh start
gw=$dir/gateway
mkdir -p "$gw"
if [ ! -s "$gw/cert.pem" ] || [ ! -s "$gw/key.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$gw/key.pem" -out "$gw/cert.pem" 2>/dev/null
fi
[ -s "$gw/admin.token" ] || openssl rand -hex 24 >"$gw/admin.token"
chown 10001 "$gw/key.pem" "$gw/admin.token"
chmod 0400 "$gw/key.pem" "$gw/admin.token"
exec tail -F "$dir/log/dovecot.log" "$dir/log/postfix.log"
