//! Records the git commit this build comes from (RAFTSCHED_BUILD_COMMIT overrides; "" when neither
//! git nor the variable can say), for `raftsched --version` and `cluster status`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RAFTSCHED_BUILD_COMMIT");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Asked of git, so that a worktree (whose `.git` is a file) is watched too: HEAD in its own
    // git dir, the branches in the common one.
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).current_dir(&root).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let in_root = |p: String| -> PathBuf { root.join(p) };
    if let (Some(git_dir), Some(common)) = (git(&["rev-parse", "--git-dir"]), git(&["rev-parse", "--git-common-dir"])) {
        let (git_dir, common) = (in_root(git_dir), in_root(common));
        for path in [git_dir.join("HEAD"), common.join("refs/heads"), common.join("packed-refs")] {
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let commit =
        std::env::var("RAFTSCHED_BUILD_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| git(&["rev-parse", "HEAD"]));
    println!("cargo:rustc-env=RAFTSCHED_BUILD_COMMIT={}", commit.unwrap_or_default());
}
