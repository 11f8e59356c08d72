//! The Helm chart, checked without a cluster: `deploy/helm/check_chart.py`
//! lints, renders and schema-validates it for every value set and runs
//! `dolbom <service> --check-config` on the rendered configuration, with the
//! stand-in secrets made here (certificates from rcgen, a signing key from
//! `dolbom token keygen`), mounted as Kubernetes mounts them (mode 0440).
//! Needs Python with `helm-python-sdk` and `kubernetes-validate` (installed
//! by `.ci/run`); skipped without them, except under CI.

use std::path::Path;
use std::process::Command;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
}

/// What the chart's Secrets would hold, under the paths it mounts them at.
fn stand_in_secrets(root: &Path) {
    let keygen = Command::new(env!("CARGO_BIN_EXE_dolbom"))
        .args(["token", "keygen", "--kid", "k1", "--out"])
        .arg(root.join("signing.key"))
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    write(
        root,
        "auth/public.keys",
        &String::from_utf8(keygen.stdout).unwrap(),
    );
    write(
        root,
        "auth/contact.key",
        "1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    );
    write(root, "auth/revoked-tokens", "# none\n");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["dolbom-dolbom-notify.care.svc".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    write(root, "tls/tls.crt", &cert.pem());
    write(root, "tls/tls.key", &key.serialize_pem());
    for ca_file in ["tls/ca.crt", "kafka-ca/ca.crt", "scylla-ca/ca.crt"] {
        write(root, ca_file, &ca_cert.pem());
    }
    write(root, "kafka-sasl/password", "kafka-password\n");
    write(root, "scylla/password", "scylla-password\n");
    write(root, "sms/api-key", "sms-api-key\n");
    for hook in [
        "dong-office",
        "control-center",
        "emergency",
        "maintenance",
        "sre",
    ] {
        write(
            root,
            &format!("webhooks/{hook}"),
            "a-webhook-secret-of-24ch\n",
        );
    }
}

#[test]
fn the_chart_lints_renders_validates_and_its_configuration_checks() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let ready = Command::new(&python)
        .args(["-c", "import helm_python, kubernetes_validate, yaml"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Python with helm-python-sdk and kubernetes-validate (.ci/run installs them)"
        );
        eprintln!("skipped: pip install helm-python-sdk kubernetes-validate");
        return;
    }
    let secrets = tempfile::tempdir().unwrap();
    stand_in_secrets(secrets.path());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/helm/check_chart.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .args(["--dolbom", env!("CARGO_BIN_EXE_dolbom"), "--secrets"])
        .arg(secrets.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.matches("configurations pass --check-config").count(),
        4
    );
}

/// `--check-config` refuses a key others can read, and says why.
#[test]
fn check_config_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    stand_in_secrets(dir.path());
    let toml = dir.path().join("notify.toml");
    let cfg = |key_mode: u32| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("tls/tls.key"),
                std::fs::Permissions::from_mode(key_mode),
            )
            .unwrap();
        }
        std::fs::write(
            &toml,
            format!(
                "listen = \"0.0.0.0:50051\"\ndata_dir = \"{d}/data\"\npublic_keys_file = \"{d}/auth/public.keys\"\ncontact_key_file = \"{d}/auth/contact.key\"\n[tls]\ncert_file = \"{d}/tls/tls.crt\"\nkey_file = \"{d}/tls/tls.key\"\n[[policies]]\nmunicipality = \"*\"\n[policies.policy]\nversion = 1\nstage_start = [0, 0, 0]\nnotice_channels = [\"watch\"]\n[[policies.policy.steps]]\ntier = \"DONG_OFFICE\"\nchannels = [\"watch\"]\nwait_minutes = 30\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_dolbom"))
            .args(["notify", "--config"])
            .arg(&toml)
            .arg("--check-config")
            .output()
            .unwrap()
    };
    let ok = cfg(0o600);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "configuration OK"
    );
    let open = cfg(0o644);
    assert!(!open.status.success());
    let err = String::from_utf8_lossy(&open.stderr);
    assert!(err.contains("tls.key") && err.contains("too open"), "{err}");
}
