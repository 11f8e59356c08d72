//! What the `dolbomctl` tests share: running the binary.

/// Runs `dolbomctl` with `args` on a blocking thread: (success, stdout,
/// stderr).
pub async fn ctl(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dolbomctl"))
            .args(&args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}
