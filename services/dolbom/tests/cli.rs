//! The `dolbom` binary as a user runs it.

use std::process::Command;

fn dolbom(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dolbom"))
        .args(args)
        .env("DOLBOM_LOG", "warn")
        .output()
        .expect("dolbom runs")
}

#[test]
fn holidays_prints_one_tab_separated_line_per_holiday_sorted() {
    let out = dolbom(&["holidays", "2026"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 22);
    assert_eq!(lines[0], "2026-01-01\t신정");
    assert!(lines.contains(&"2026-05-01\t노동절"));
    assert!(lines.contains(&"2026-07-17\t제헌절"));
    assert!(lines.contains(&"2026-10-05\t대체공휴일(개천절)"));
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted, lines);
}

#[test]
fn holidays_shows_estimated_elections_as_such() {
    let out = dolbom(&["holidays", "2028"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "2028-04-12\t제23대 국회의원선거 (예정)"),
        "{text}"
    );
}

#[test]
fn holidays_outside_the_covered_years_is_a_clear_error() {
    let out = dolbom(&["holidays", "1999"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside 2000–2050"));
}

#[test]
fn holidays_accepts_an_operator_file() {
    let dir = std::env::temp_dir().join(format!("dolbom-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("extra.toml");
    std::fs::write(
        &f,
        "[[day]]\ndate = \"2027-05-03\"\nname = \"임시공휴일\"\nkind = \"temporary\"\n",
    )
    .unwrap();
    let out = dolbom(&["holidays", "2027", "--extra", f.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("2027-05-03\t임시공휴일"));
}

#[test]
fn standalone_runs_a_small_town_and_reports_ok() {
    let dir = tempfile::tempdir().unwrap();
    let out = dolbom(&[
        "standalone",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--grpc-listen",
        "127.0.0.1:0",
        "--speed",
        "0",
        "--households",
        "100",
        "--sim-hours",
        "40",
        "--quiet",
        "2",
        "--offline",
        "1",
        "--hospital",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("result         OK"), "{text}");
    assert!(text.contains("OPENED"), "{text}");
    assert!(text.contains("gRPC API       http://127.0.0.1:"), "{text}");
    assert!(dir.path().join("tokens/national.token").exists());
    assert!(dir.path().join("notify.sqlite").exists());
}

#[test]
fn invalid_options_are_reported() {
    let out = dolbom(&["standalone", "--households", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("households"));
}
