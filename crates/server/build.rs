//! Records the git commit this build comes from (RAFTSCHED_BUILD_COMMIT overrides; "" when neither
//! git nor the variable can say), for `raftsched --version` and `cluster status`.

fn main() {
    println!("cargo:rerun-if-env-changed=RAFTSCHED_BUILD_COMMIT");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if root.join(path).exists() {
            println!("cargo:rerun-if-changed={}", root.join(path).display());
        }
    }
    let commit = std::env::var("RAFTSCHED_BUILD_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&root).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!("cargo:rustc-env=RAFTSCHED_BUILD_COMMIT={}", commit.unwrap_or_default());
}
