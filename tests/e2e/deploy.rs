//! Deployment files: `docker-compose.yml` (parsed: no container engine runs
//! here) and the systemd units in `contrib/systemd/` (`systemd-analyze
//! verify` where it is installed). The commands they run are checked by the
//! real binaries: every flag parsed, `--help` last.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `args` (a binary of ours and its flags) with `--help` appended:
/// exit 0 only if clap accepted every flag and value before it.
fn flags_parse(args: &[String], what: &str) {
    let bin = siemstress_tests::bin(&args[0]);
    let out = Command::new(&bin)
        .args(&args[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn docker_compose_services_images_volumes_ports() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let doc = &YamlLoader::load_from_str(&text).expect("docker-compose.yml is YAML")[0];
    let services = &doc["services"];
    let names: Vec<&str> = services
        .as_hash()
        .expect("services")
        .keys()
        .filter_map(Yaml::as_str)
        .collect();
    for want in ["mariadb", "collector", "trigger", "follower"] {
        assert!(names.contains(&want), "service {want} missing: {names:?}");
    }
    assert!(
        services["mariadb"]["image"]
            .as_str()
            .unwrap()
            .starts_with("mariadb:")
    );
    assert!(root().join("Dockerfile").is_file());
    let declared_volumes: Vec<&str> = doc["volumes"]
        .as_hash()
        .map(|h| h.keys().filter_map(Yaml::as_str).collect())
        .unwrap_or_default();
    let declared_secrets: Vec<&str> = doc["secrets"]
        .as_hash()
        .map(|h| h.keys().filter_map(Yaml::as_str).collect())
        .unwrap_or_default();
    let mut listen_ports = Vec::new();
    for name in &names {
        let s = &services[*name];
        let built = !s["build"].is_badvalue() || s["image"].as_str() == Some("siemstress:latest");
        assert!(
            !s["image"].is_badvalue() || built,
            "{name}: no image or build"
        );
        for v in strings(&s["volumes"]) {
            let (src, target) = v.split_once(':').unwrap();
            assert!(target.starts_with('/'), "{name}: volume {v}");
            if src.starts_with("./config/") {
                assert!(
                    root().join(src).is_file(),
                    "{name}: {src} is not in the repository"
                );
            } else if !src.starts_with('.') && !src.starts_with('/') {
                assert!(
                    declared_volumes.contains(&src),
                    "{name}: volume {src} is not declared"
                );
            }
        }
        for secret in strings(&s["secrets"]) {
            assert!(
                declared_secrets.contains(&secret.as_str()),
                "{name}: secret {secret}"
            );
        }
        if let Some(deps) = s["depends_on"].as_hash() {
            for d in deps.keys().filter_map(Yaml::as_str) {
                assert!(names.contains(&d), "{name} depends on unknown {d}");
            }
        }
        let cmd = strings(&s["command"]);
        if built && !cmd.is_empty() {
            flags_parse(&cmd, name);
            // The config it mounts is the repository's, and loads.
            let i = cmd.iter().position(|a| a == "-c").expect("-c");
            assert_eq!(cmd[i + 1], "/etc/siemstress/siemstress.toml");
            for w in cmd.windows(2).filter(|w| w[0] == "--listen") {
                let (scheme, addr) = w[1].split_once("://").unwrap();
                let port = addr.rsplit_once(':').unwrap().1.to_owned();
                listen_ports.push((name.to_string(), scheme.to_owned(), port));
            }
        }
    }
    // Every listener is published, with its protocol.
    assert_eq!(listen_ports.len(), 3, "{listen_ports:?}");
    for (svc, scheme, port) in &listen_ports {
        let proto = if scheme == "udp" { "udp" } else { "tcp" };
        let published = strings(&services[svc.as_str()]["ports"]);
        assert!(
            published
                .iter()
                .any(|p| p.ends_with(&format!(":{port}/{proto}"))),
            "{svc}: {scheme}://…:{port} is not in ports {published:?}"
        );
    }
    siemstress_common::config::Config::from_file(&root().join("config/docker.toml"))
        .expect("config/docker.toml loads")
        .listen()
        .expect("[listen] of config/docker.toml");
}

/// The units name our binaries, run hardened as `siemstress`, and pass
/// `systemd-analyze verify` (with the binaries of this build).
#[test]
fn systemd_units_are_hardened_and_verify() {
    let dir = root().join("contrib/systemd");
    let units = [
        "siemparse@.service",
        "siemparse-listen.service",
        "siemtrigger.service",
        "siemtrigger-once.service",
        "siemtrigger.timer",
    ];
    let bin_dir = siemstress_tests::bin("siemparse")
        .parent()
        .unwrap()
        .to_path_buf();
    let scratch = tempfile::tempdir().unwrap();
    let mut to_verify = Vec::new();
    for unit in units {
        let text =
            std::fs::read_to_string(dir.join(unit)).unwrap_or_else(|e| panic!("{unit}: {e}"));
        if unit.ends_with(".service") {
            for key in [
                "User=siemstress",
                "ProtectSystem=strict",
                "NoNewPrivileges=yes",
            ] {
                assert!(text.lines().any(|l| l == key), "{unit}: no {key}");
            }
            let exec = text
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap_or_else(|| panic!("{unit}: no ExecStart"));
            let args: Vec<String> = exec
                .replace("${SECTION}", "auth")
                .replace("%f", "/var/log/auth.log")
                .split_whitespace()
                .map(|a| a.trim_start_matches("/usr/local/bin/").to_owned())
                .collect();
            flags_parse(&args, unit);
        }
        // An instance of the template, as `systemctl enable` would make it.
        let name = unit.replace("@.", "@var-log-auth.log.");
        let local = text.replace("/usr/local/bin/", &format!("{}/", bin_dir.display()));
        std::fs::write(scratch.path().join(&name), local).unwrap();
        to_verify.push(scratch.path().join(name));
    }
    let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&to_verify)
        .output()
    else {
        eprintln!("skipped systemd-analyze verify: not installed");
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    // Warnings (an unknown key, a bad value) do not change the exit status:
    // any line about our units is a failure.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("siemparse") || l.contains("siemtrigger"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{err}"
    );
}
