//! Storage damage, as a disk or an operator's mistake does it: one file of a (stopped) replica's
//! data dir truncated at a random offset, a few bits flipped, a 4 KiB block zeroed, or the file
//! deleted. Used by the `damage` nemesis and by the damage matrix test
//! (`crates/raftsched/tests/damage.rs`).

use std::path::{Path, PathBuf};

use super::rng::Rng;

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Damages one file under `dir` as `rng` decides (two times in three sled's log file `db`, where
/// the records are; otherwise any file). Returns what was done, naming the file relative to `dir`.
pub fn damage_one_file(dir: &Path, rng: &mut Rng) -> std::io::Result<String> {
    let mut all = Vec::new();
    files(dir, &mut all)?;
    all.sort();
    if all.is_empty() {
        return Ok("nothing to damage (empty data dir)".into());
    }
    let db = all.iter().find(|p| p.ends_with("sled/db")).cloned();
    let file = match (rng.below(3), db) {
        (0 | 1, Some(db)) => db,
        _ => rng.pick(&all).clone(),
    };
    let name = file.strip_prefix(dir).unwrap_or(&file).display().to_string();
    let mut bytes = std::fs::read(&file)?;
    let len = bytes.len() as u64;
    let what = match rng.below(4) {
        0 => {
            let at = if len == 0 { 0 } else { rng.below(len) };
            bytes.truncate(at as usize);
            format!("{name} truncated to {at} of {len} bytes")
        }
        1 if len > 0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let at = rng.below(len) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            format!("{name}: {n} bits flipped")
        }
        2 if len > 0 => {
            let at = rng.below(len) as usize;
            let end = (at + 4096).min(bytes.len());
            bytes[at..end].fill(0);
            format!("{name}: bytes {at}..{end} zeroed")
        }
        _ => {
            std::fs::remove_file(&file)?;
            return Ok(format!("{name} deleted"));
        }
    };
    std::fs::write(&file, &bytes)?;
    Ok(what)
}
