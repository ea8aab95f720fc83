#!/usr/bin/env python3
"""SendMail with a 20 MB attachment: time and the gateway's peak memory.

Usage: benches/send_large.py [GATEWAY_BINARY]   (default target/release/eas-gateway)

Needs the dev mail stack (deploy/dev/mailstack.sh start) and pyactivesync. Starts the gateway
as its own process (TLS on a free port, a fresh state file), sends alice -> bob a mail with a
20 MiB attachment through pyactivesync (EAS 16.1 SendMail, SaveInSentItems), and prints the
time and the gateway's resident memory before and at its peak (VmHWM), next to the same message
submitted straight to Postfix over SMTP in the same run.
"""
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import warnings

for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)
warnings.filterwarnings("ignore")

from email.message import EmailMessage  # noqa: E402

import pyactivesync  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/eas-gateway")
DEV = os.environ.get("EAS_DEV_DIR", "/var/lib/eas-gateway-dev")
USER, PASSWORD, TO = "alice@example.test", "alice-password", "bob@example.test"


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def message(tag):
    data = bytes((i * 2654435761 >> 24) & 255 for i in range(20 << 20))
    m = EmailMessage()
    m["From"] = USER
    m["To"] = TO
    m["Subject"] = f"send_large {tag} {time.time()}"
    m.set_content("a 20 MiB attachment")
    m.add_attachment(data, maintype="application", subtype="octet-stream", filename="big.bin")
    return m


def main():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tempfile.mkdtemp(prefix="send-large-")
    cert = os.path.join(work, "cert.pem")
    key = os.path.join(work, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    config = os.path.join(work, "gw.toml")
    with open(config, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{port}"
tls_cert = "{cert}"
tls_key = "{key}"
max_body_bytes = 67108864
[imap]
host = "127.0.0.1"
port = 143
security = "none"
[smtp]
host = "127.0.0.1"
port = 587
security = "none"
[state]
url = "sqlite://{work}/state.db"
[identity]
domain = "example.test"
""")
    gw = subprocess.Popen([BINARY, "serve", "--config", config],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        m = message("gateway")
        size = len(m.as_bytes())
        with pyactivesync.Client(f"127.0.0.1:{port}", USER, PASSWORD,
                                 device_id="SENDLARGE1", verify_ssl=False) as c:
            c.list_folders()
            before = status_kib(gw.pid, "VmRSS")
            t = time.time()
            c.send_mail(m, save_in_sent_items=True)
            took = time.time() - t
        peak = status_kib(gw.pid, "VmHWM")
    finally:
        gw.terminate()
        gw.wait()

    m = message("smtp")
    t = time.time()
    with smtplib.SMTP("127.0.0.1", 587) as s:
        s.login(USER, PASSWORD)
        s.send_message(m)
    direct = time.time() - t

    print(f"message size                      {size / 1e6:8.1f} MB")
    print(f"gateway SendMail (pyactivesync)   {took:8.2f} s   RSS {before / 1024:.1f} MiB -> "
          f"peak {peak / 1024:.1f} MiB (+{(peak - before) / 1024:.1f} MiB)")
    print(f"direct SMTP submission (smtplib)  {direct:8.2f} s")


if __name__ == "__main__":
    main()
