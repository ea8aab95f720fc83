//! `deploy/container/`: no container engine runs here, so the files are checked for what they
//! promise: a two-stage build (rust:1.95-bookworm with `cargo build --release --locked`, then
//! debian:bookworm-slim with the binary alone, a non-root user, the port, a health check on
//! the admin listener's /healthz); compose.yaml is YAML (read by python3's PyYAML) whose build
//! files and mounted files exist; the demo configuration is one the gateway accepts and whose
//! ports match the image's.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The instructions of a Containerfile, continuation lines joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn the_containerfile_builds_in_one_stage_and_runs_the_binary_alone_unprivileged() {
    let ins = instructions(&read("deploy/container/Containerfile"));
    let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert_eq!(
        froms[0],
        "FROM docker.io/library/rust:1.95-bookworm AS build"
    );
    assert_eq!(froms[1], "FROM docker.io/library/debian:bookworm-slim");
    let last = ins.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
    let (build, runtime) = ins.split_at(last);
    assert!(
        build
            .iter()
            .any(|i| i.starts_with("RUN cargo build --release --locked")),
        "{build:?}"
    );
    let copies: Vec<&String> = runtime.iter().filter(|i| i.starts_with("COPY")).collect();
    assert_eq!(
        copies,
        vec!["COPY --from=build /eas-gateway /usr/local/bin/eas-gateway"],
        "the runtime gets the binary alone"
    );
    assert!(runtime.iter().any(|i| i.contains("ca-certificates")));
    let user = runtime
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("a USER");
    assert!(!["root", "0"].contains(&user.trim()), "runs as {user}");
    assert!(runtime.iter().any(|i| i == "EXPOSE 8443"));
    let health = runtime
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    assert!(
        health.contains("/dev/tcp/127.0.0.1/9090") && health.contains("GET /healthz"),
        "{health}"
    );
    assert!(runtime
        .iter()
        .any(|i| i.starts_with("ENTRYPOINT [\"/usr/local/bin/eas-gateway\"]")));
    // The build context leaves out the build output.
    assert!(read(".dockerignore").lines().any(|l| l.trim() == "target/"));
    // The mail image's files exist.
    for i in instructions(&read("deploy/container/Containerfile.mail")) {
        if let Some(rest) = i.strip_prefix("COPY ") {
            let src = rest.split_whitespace().next().unwrap();
            assert!(root().join(src).exists(), "{src}");
        }
    }
}

/// compose.yaml as JSON, through python3 and PyYAML.
fn compose() -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root().join("deploy/container/compose.yaml"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "compose.yaml does not load (is PyYAML installed? deploy/dev/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_compose_demo_refers_to_files_that_exist_and_a_valid_gateway_config() {
    let c = compose();
    let dir = root().join("deploy/container");
    let services = c["services"].as_object().expect("services");
    assert_eq!(
        services.keys().collect::<Vec<_>>(),
        vec!["gateway", "mail"],
        "{services:?}"
    );
    for (name, s) in services {
        let context = dir.join(s["build"]["context"].as_str().expect("build.context"));
        let file = s["build"]["dockerfile"].as_str().expect("build.dockerfile");
        assert!(context.join(file).is_file(), "{name}: {file}");
        for v in s["volumes"].as_array().expect("volumes") {
            let v = v.as_str().unwrap();
            let source = v.split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(dir.join(source).is_file(), "{name}: {source}");
            } else {
                assert!(
                    c["volumes"].get(source).is_some(),
                    "{name}: volume {source}"
                );
            }
        }
    }
    let gw = &c["services"]["gateway"];
    assert_eq!(gw["network_mode"], "service:mail");
    assert_eq!(gw["build"]["dockerfile"], "deploy/container/Containerfile");
    assert_eq!(c["services"]["mail"]["ports"][0], "8443:8443");

    // The demo configuration is valid and matches the image: phones on 8443, the health
    // check's admin listener on 127.0.0.1:9090, state in the image's volume.
    let config = eas_gateway::config::Config::from_toml(
        &read("deploy/container/demo.toml"),
        Path::new("/etc/eas-gateway"),
    )
    .expect("demo.toml is a valid configuration");
    assert_eq!(config.server.listen.port(), 8443);
    assert_eq!(
        config.admin.expect("admin listener").listen.to_string(),
        "127.0.0.1:9090"
    );
    assert!(config
        .state_url
        .starts_with("sqlite:///var/lib/eas-gateway/"));
    // The mail container writes the files the gateway is told to read.
    let entry = read("deploy/container/mail-entrypoint.sh");
    for f in ["cert.pem", "key.pem", "admin.token"] {
        assert!(entry.contains(&format!("$gw/{f}")), "{f}");
    }
}
