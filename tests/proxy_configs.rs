//! The reverse-proxy configurations of `deploy/` are accepted by their own tools (`nginx -t`,
//! `haproxy -c`, `caddy validate`) with real certificate files, and say what EAS needs:
//! timeouts above the longest heartbeat, no buffering or compression on the EAS path, the
//! body size of `server.max_body_bytes`, the client's address forwarded, Autodiscover routed
//! whatever the letter case.

mod proxies;

use proxies::*;

/// Default `[server] max_body_bytes` and `[push] max_heartbeat_secs`.
const MAX_BODY: u64 = 64 * 1024 * 1024;
const MAX_HEARTBEAT: u64 = 3540;

fn ports() -> Ports {
    Ports {
        https: 443,
        http: 80,
        upstream: 8080,
    }
}

#[test]
fn nginx_accepts_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let conf = nginx_config(dir.path(), &c, ports(), &[]);
    let (d, e) = (
        dir.path().display().to_string(),
        dir.path().join("error.log"),
    );
    check(
        "nginx",
        &[
            "-t",
            "-c",
            &conf.display().to_string(),
            "-p",
            &d,
            "-e",
            &e.display().to_string(),
        ],
        &[],
    );
}

#[test]
fn haproxy_accepts_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let conf = haproxy_config(dir.path(), &c, ports());
    check("haproxy", &["-c", "-f", &conf.display().to_string()], &[]);
}

#[test]
fn caddy_accepts_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let conf = caddy_config(dir.path(), &c, ports(), &[]);
    // Caddy keeps its state under XDG_DATA_HOME / HOME: this test's directory.
    check(
        "caddy",
        &[
            "validate",
            "--adapter",
            "caddyfile",
            "--config",
            &conf.display().to_string(),
        ],
        &caddy_env(dir.path()),
    );
}

/// Seconds of a duration like `3600s`, `60m` or `1h`.
fn secs(v: &str) -> u64 {
    let v = v.trim_end_matches(';');
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("`{v}` is not a duration"));
    n * match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        other => panic!("unit {other}"),
    }
}

/// The value after `key` on each line that starts with it (after indentation).
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(str::trim)
        .collect()
}

#[test]
fn the_configs_say_what_eas_needs() {
    // nginx: the EAS location.
    let nginx = deploy("nginx/eas-gateway.conf");
    let eas = &nginx[nginx.find("location /Microsoft-Server-ActiveSync").unwrap()..];
    let eas = &eas[..eas.find('}').unwrap()];
    for key in ["proxy_read_timeout", "proxy_send_timeout"] {
        let v = values(eas, key);
        assert!(
            v.len() == 1 && secs(v[0]) > MAX_HEARTBEAT,
            "nginx {key}: {v:?}"
        );
    }
    for line in [
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "gzip off;",
        "client_max_body_size 64m;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    ] {
        assert!(eas.contains(line), "nginx EAS location lacks `{line}`");
    }
    assert_eq!(64 * 1024 * 1024, MAX_BODY);
    assert!(
        nginx.contains("location ~* ^/autodiscover/"),
        "nginx Autodiscover, any case"
    );

    // HAProxy: both inactivity timeouts, forwarding, the size check, case-insensitive routing.
    let haproxy = deploy("haproxy/haproxy.cfg");
    for key in ["timeout client", "timeout server"] {
        let v = values(&haproxy, key);
        assert!(
            v.len() == 1 && secs(v[0]) > MAX_HEARTBEAT,
            "haproxy {key}: {v:?}"
        );
    }
    for line in [
        "option forwardfor",
        "acl eas path_beg -i /Microsoft-Server-ActiveSync",
        "acl autodiscover path_beg -i /autodiscover/",
        &format!("eas {{ req.hdr_val(content-length) gt {MAX_BODY} }}"),
    ] {
        assert!(haproxy.contains(line), "haproxy.cfg lacks `{line}`");
    }
    assert!(!haproxy.contains("\n    compression"), "haproxy compresses");

    // Caddy: no buffering, long upstream timeouts, no compression, the body size.
    let caddy = deploy("caddy/Caddyfile");
    for key in ["response_header_timeout", "read_timeout"] {
        let v = values(&caddy, key);
        assert!(
            v.len() == 1 && secs(v[0]) > MAX_HEARTBEAT,
            "Caddy {key}: {v:?}"
        );
    }
    assert_eq!(values(&caddy, "flush_interval"), vec!["-1"]);
    assert_eq!(values(&caddy, "max_size").first(), Some(&"64MiB"));
    assert!(values(&caddy, "encode").is_empty(), "Caddy compresses");
    assert!(
        values(&caddy, "write").is_empty(),
        "a Caddy write timeout would cut waiting Pings"
    );
    assert!(caddy.contains("path_regexp autodiscover (?i)^/autodiscover/"));
}
