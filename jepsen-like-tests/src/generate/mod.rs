//! Generated histories with verdicts known by construction: the checker's test and benchmark
//! data (`jepsen-like-tests generate`, the property tests, `bench`, the Porcupine campaign).
//!
//! A history is many clients (and, for `scheduler`, workers) running against one correct
//! sequential store in virtual time ([`sim`]), so it is linearizable by construction. Some
//! operations time out (`info`), half of them after taking effect. With an [`Anomaly`], one
//! *scene* is played at one instant somewhere in the middle of the run: a few sequential
//! operations of the scene's own processes on fresh values, with the anomaly injected so that it
//! is certain to be observable (the tables in [`cells`] and [`scheduler`] say why each one is).
//! Everything in flight elsewhere overlaps the scene, so the checker has to rule out every order
//! of that traffic before it may answer no: that is what makes violating histories hard.
//! The same scene without an anomaly (`none`) keeps a clean twin of each violating history.

pub mod cells;
pub mod scheduler;
pub mod sim;

use std::fmt::Write as _;
use std::path::Path;

use crate::history::History;
use crate::model::ModelKind;

/// What the scene injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Anomaly {
    /// No anomaly: the scene runs correctly (linearizable).
    None,
    /// A read returns the value before an acknowledged write that ended before it began.
    StaleRead,
    /// An acknowledged write never takes effect, and a later read shows it.
    LostWrite,
    /// A write takes effect twice (a retry applied again).
    DuplicateApply,
    /// A read returns a value nobody wrote.
    PhantomRead,
    /// A write is read, then gone (the store rolls back).
    Vanish,
    /// Two writes on different keys are seen in the opposite order by another process.
    Reorder,
}

impl Anomaly {
    pub const ALL: [Anomaly; 7] = [
        Anomaly::None,
        Anomaly::StaleRead,
        Anomaly::LostWrite,
        Anomaly::DuplicateApply,
        Anomaly::PhantomRead,
        Anomaly::Vanish,
        Anomaly::Reorder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Anomaly::None => "none",
            Anomaly::StaleRead => "stale-read",
            Anomaly::LostWrite => "lost-write",
            Anomaly::DuplicateApply => "duplicate-apply",
            Anomaly::PhantomRead => "phantom-read",
            Anomaly::Vanish => "vanish",
            Anomaly::Reorder => "reorder",
        }
    }
}

/// Clients per history: 1 to this many.
pub const CLIENTS_MAX: usize = 100;
/// Operations per history: up to this many.
pub const OPERATIONS_MAX: usize = 1_000_000;

/// Shape of one generated history.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub model: ModelKind,
    pub clients: usize,
    pub operations: usize,
    /// Operations that time out, per thousand.
    pub info_per_mille: u64,
    /// Keys (register and kv); the scene uses key "0".
    pub keys: usize,
    /// Worker processes (scheduler).
    pub workers: usize,
    pub anomaly: Anomaly,
    /// Play the scene (always when there is an anomaly).
    pub scene: bool,
    pub seed: u64,
}

impl GenConfig {
    /// A clean history of `model` with common defaults: 1 % time-outs, 10 keys for kv, 1 register,
    /// 2 workers, no scene.
    pub fn new(model: ModelKind, clients: usize, operations: usize, seed: u64) -> GenConfig {
        let keys = if model == ModelKind::Kv { 10 } else { 1 };
        GenConfig {
            model,
            clients,
            operations,
            info_per_mille: 10,
            keys,
            workers: 2,
            anomaly: Anomaly::None,
            scene: false,
            seed,
        }
    }

    /// The verdict by construction.
    pub fn linearizable(&self) -> bool {
        self.anomaly == Anomaly::None
    }
}

/// Generates one history.
pub fn generate(cfg: &GenConfig) -> History {
    let clients = cfg.clients.clamp(1, CLIENTS_MAX);
    let operations = cfg.operations.clamp(1, OPERATIONS_MAX);
    let keys = cfg.keys.max(1);
    // The scene sits between 20 % and 80 % of the run, so that traffic both precedes and overlaps
    // it.
    let scene_at = (cfg.scene || cfg.anomaly != Anomaly::None)
        .then(|| operations / 5 + (sim::Rng::new(cfg.seed ^ 0x5ce4e).below(operations as u64 * 3 / 5 + 1) as usize));
    let sim = sim::SimConfig {
        operations,
        clients,
        workers: if cfg.model == ModelKind::Scheduler { cfg.workers } else { 0 },
        info_per_mille: cfg.info_per_mille.min(1000),
        scene_at,
        anomaly: cfg.anomaly,
        seed: cfg.seed,
    };
    match cfg.model {
        ModelKind::Register => sim::simulate(&mut cells::Registers::new(keys), &sim),
        ModelKind::Kv => sim::simulate(&mut cells::Strings::new(keys), &sim),
        ModelKind::Scheduler => sim::simulate(&mut scheduler::Tasks::default(), &sim),
    }
}

/// The mix of a campaign: history `i` of `count`, for a given base seed. Models, client counts,
/// sizes, time-out shares and anomalies all vary; half the histories are clean twins. Keys are
/// drawn so that most histories have at most about 10 clients per key (as in Jepsen's and
/// Porcupine's data), and about one in five has more: those are where exhaustive checkers start
/// to give up, so the campaign shows where that is without spending most of its time there.
pub fn campaign_config(i: usize, seed: u64) -> GenConfig {
    let mut rng = sim::Rng::new(seed.wrapping_add(i as u64).wrapping_mul(0x9e37_79b9));
    let model = [ModelKind::Register, ModelKind::Kv, ModelKind::Scheduler][i % 3];
    let clients = [1, 2, 5, 10, 20, 50, 100][rng.below(7) as usize];
    let operations = [100, 300, 1_000, 3_000, 10_000][rng.below(5) as usize];
    let info_per_mille = [0, 5, 10, 50][rng.below(4) as usize];
    let anomaly = if rng.below(2) == 0 { Anomaly::None } else { Anomaly::ALL[1 + rng.below(6) as usize] };
    let mut cfg = GenConfig::new(model, clients, operations, seed.wrapping_add(i as u64));
    cfg.info_per_mille = info_per_mille;
    let per_key =
        if rng.below(5) == 0 { [10, 20, 50][rng.below(3) as usize] } else { [1, 2, 5][rng.below(3) as usize] };
    cfg.keys = match model {
        ModelKind::Register | ModelKind::Kv => clients.div_ceil(per_key),
        ModelKind::Scheduler => 1,
    };
    cfg.anomaly = anomaly;
    cfg.scene = true;
    cfg
}

/// Writes `count` campaign histories into `dir` as `NNNNN-<model>-<anomaly>.jsonl`, and
/// `manifest.tsv` (file, model, linearizable, clients, ops, info_per_mille, anomaly, seed).
pub fn write_campaign(dir: &Path, count: usize, seed: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut manifest = String::from("file\tmodel\tlinearizable\tclients\tops\tinfo_per_mille\tanomaly\tseed\n");
    for i in 0..count {
        let cfg = campaign_config(i, seed);
        let model = model_name(cfg.model);
        let file = format!("{i:05}-{model}-{}.jsonl", cfg.anomaly.name());
        std::fs::write(dir.join(&file), generate(&cfg).to_jsonl())?;
        let _ = writeln!(
            manifest,
            "{file}\t{model}\t{}\t{}\t{}\t{}\t{}\t{}",
            cfg.linearizable(),
            cfg.clients,
            cfg.operations,
            cfg.info_per_mille,
            cfg.anomaly.name(),
            cfg.seed
        );
    }
    std::fs::write(dir.join("manifest.tsv"), manifest)
}

/// The name `check --model` takes.
pub fn model_name(m: ModelKind) -> &'static str {
    match m {
        ModelKind::Register => "register",
        ModelKind::Kv => "kv",
        ModelKind::Scheduler => "scheduler",
    }
}
