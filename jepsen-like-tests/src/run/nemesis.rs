//! The nemesis: faults drawn from the run's seed, one at a time, each started, held for a while
//! and healed, with every step written to the nemesis timeline.

use std::time::Duration;

use serde::Serialize;

use raftsched_client::Client;

use super::procs::{ProcState, Procs};
use super::rng::Rng;

/// The faults the nemesis can inject. `--nemesis` names them one by one or by family
/// (`kill`, `pause`, `partition`, `worker`, `all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// kill -9 a random replica, restart it when healed
    KillOne,
    KillLeader,
    /// kill -9 a majority at once
    KillMajority,
    /// kill -9 every replica at once
    KillAll,
    /// SIGSTOP a random replica, SIGCONT when healed
    PauseOne,
    PauseLeader,
    /// cut the leader off from every other replica
    IsolateLeader,
    /// a random minority cut off from the majority
    SplitMajorityMinority,
    /// two halves that cannot talk, and one replica that talks to both
    Bridge,
    /// kill -9 a worker, restart it (same id) when healed
    KillWorker,
    /// SIGSTOP a worker for the hold time (its lease runs out)
    PauseWorker,
    /// `cluster remove` a follower, kill it and wipe its data dir; when healed, start it empty
    /// with `--join` and `cluster add` it back (it catches up by snapshot)
    RemoveAdd,
    /// `cluster transfer-leader` to a random follower
    TransferLeader,
    /// kill -9 a replica still on the old build (`--old-bin`) and restart it on this build when
    /// healed; once all run this build, kill and restart one (the cluster version then rises)
    Upgrade,
    /// kill -9 a replica, damage one file of its data dir (truncate, flip bits, zero a block or
    /// delete it), restart it when healed; if it refuses to start (damaged), replace it: remove,
    /// wipe, start empty with `--join`, add back
    Damage,
    /// a fake peer without the cluster secret sends forged replica messages to every replica,
    /// and a rogue worker reports on tasks it does not hold with guessed tokens, for the hold time
    Hostile,
}

impl Fault {
    pub const ALL: [Fault; 14] = [
        Fault::KillOne,
        Fault::KillLeader,
        Fault::KillMajority,
        Fault::KillAll,
        Fault::PauseOne,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::SplitMajorityMinority,
        Fault::Bridge,
        Fault::KillWorker,
        Fault::PauseWorker,
        Fault::RemoveAdd,
        Fault::TransferLeader,
        Fault::Hostile,
    ];

    /// Faults `all` does not include: each needs something a run does not have by default (an
    /// old binary) or changes what a run proves (replicas rebuilt from peers).
    pub const OPT_IN: [Fault; 2] = [Fault::Upgrade, Fault::Damage];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Upgrade => "upgrade",
            Fault::Damage => "damage",
            Fault::KillOne => "kill-one",
            Fault::KillLeader => "kill-leader",
            Fault::KillMajority => "kill-majority",
            Fault::KillAll => "kill-all",
            Fault::PauseOne => "pause-one",
            Fault::PauseLeader => "pause-leader",
            Fault::IsolateLeader => "isolate-leader",
            Fault::SplitMajorityMinority => "split-majority-minority",
            Fault::Bridge => "bridge",
            Fault::KillWorker => "kill-worker",
            Fault::PauseWorker => "pause-worker",
            Fault::RemoveAdd => "remove-add",
            Fault::TransferLeader => "transfer-leader",
            Fault::Hostile => "hostile",
        }
    }

    pub fn family(self) -> &'static str {
        match self {
            Fault::KillOne | Fault::KillLeader | Fault::KillMajority | Fault::KillAll => "kill",
            Fault::PauseOne | Fault::PauseLeader => "pause",
            Fault::IsolateLeader | Fault::SplitMajorityMinority | Fault::Bridge => "partition",
            Fault::KillWorker | Fault::PauseWorker => "worker",
            Fault::RemoveAdd | Fault::TransferLeader => "membership",
            Fault::Upgrade => "version",
            Fault::Damage => "disk",
            Fault::Hostile => "hostile",
        }
    }

    pub fn is_partition(self) -> bool {
        self.family() == "partition"
    }

    /// Parses a comma-separated list of faults and families; `all` is every fault, `none` none.
    pub fn parse_list(text: &str) -> Result<Vec<Fault>, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let matched: Vec<Fault> = Fault::ALL
                .into_iter()
                .filter(|f| part == "all" || f.family() == part || f.name() == part)
                .chain(Fault::OPT_IN.into_iter().filter(|f| f.family() == part || f.name() == part))
                .collect();
            if matched.is_empty() && part != "none" {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                return Err(format!(
                    "unknown nemesis {part:?} (families kill, pause, partition, worker, membership, hostile, all, none; \
                     or one of {}, upgrade, damage)",
                    names.join(", ")
                ));
            }
            out.extend(matched);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// One step of the nemesis timeline.
#[derive(Debug, Clone, Serialize)]
pub struct NemesisEvent {
    pub time_ns: u64,
    /// `start` or `stop`
    pub phase: &'static str,
    pub fault: String,
    pub targets: Vec<String>,
}

/// A fault in progress, with what is needed to heal it.
#[derive(Debug, Clone)]
pub enum Active {
    /// Forged traffic being sent.
    Hostile(std::sync::Arc<crate::run::hostile::Attack>),
    Killed(Vec<usize>),
    Paused(Vec<usize>),
    Partitioned,
    WorkerKilled(usize),
    WorkerPaused(usize),
    /// Removed from the membership, killed and wiped.
    Removed(usize),
    /// Killed and one of its files damaged.
    Damaged(usize),
    /// Nothing to heal.
    Done,
}

pub struct Nemesis {
    pub faults: Vec<Fault>,
    pub rng: Rng,
    /// What the `hostile` fault's attacker got accepted (nothing, in a correct run).
    pub hostile_accepted: crate::run::hostile::Accepted,
}

fn node_names(nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|i| format!("n{}", i + 1)).collect()
}

impl Nemesis {
    /// Draws and starts one fault. `leader` is the current leader's index if known.
    /// Returns the fault's name, its targets and how to heal it; `None` if nothing applies.
    ///
    /// Runs inside `tokio::task::block_in_place`: membership faults call the cluster through
    /// `admin` with `Handle::block_on`.
    pub fn start(
        &mut self,
        procs: &mut Procs,
        leader: Option<usize>,
        admin: &Client,
    ) -> Option<(String, Vec<String>, Active)> {
        let n = procs.n_replicas();
        let running: Vec<usize> = (0..n).filter(|&i| procs.replica_state(i) == ProcState::Running).collect();
        let live_workers: Vec<usize> =
            (0..procs.n_workers()).filter(|&k| procs.worker_state(k) == ProcState::Running).collect();
        let faults = self.possible(procs, leader.is_some() && running.len() == n, !live_workers.is_empty());
        if faults.is_empty() || running.is_empty() {
            return None;
        }
        let fault = *self.rng.pick(&faults);
        let leader = leader.filter(|l| running.contains(l));
        let random = *self.rng.pick(&running);
        let name = fault.name().to_string();
        let kill = |procs: &mut Procs, targets: Vec<usize>| {
            for &i in &targets {
                procs.kill_replica(i);
            }
            Some((name.clone(), node_names(&targets), Active::Killed(targets)))
        };
        match fault {
            Fault::KillOne => kill(procs, vec![random]),
            Fault::KillLeader => kill(procs, vec![leader.unwrap_or(random)]),
            Fault::KillMajority => {
                let targets = self.subset(n, n / 2 + 1);
                kill(procs, targets)
            }
            Fault::KillAll => kill(procs, (0..n).collect()),
            Fault::PauseOne | Fault::PauseLeader => {
                let target = if fault == Fault::PauseOne { random } else { leader.unwrap_or(random) };
                procs.pause_replica(target);
                Some((name, node_names(&[target]), Active::Paused(vec![target])))
            }
            Fault::IsolateLeader | Fault::SplitMajorityMinority | Fault::Bridge => {
                let targets = self.partition(procs, fault, leader.unwrap_or(random))?;
                Some((name, targets, Active::Partitioned))
            }
            Fault::KillWorker | Fault::PauseWorker => {
                let k = *self.rng.pick(&live_workers);
                let active = if fault == Fault::KillWorker {
                    procs.kill_worker(k);
                    Active::WorkerKilled(k)
                } else {
                    procs.pause_worker(k);
                    Active::WorkerPaused(k)
                };
                Some((name, vec![format!("w{}", k + 1)], active))
            }
            Fault::Upgrade => {
                let (targets, target) = self.upgrade_one(procs, &running, random);
                Some((name, targets, Active::Killed(vec![target])))
            }
            Fault::Damage => {
                procs.kill_replica(random);
                let what = crate::run::damage::damage_one_file(&procs.data_dir(random), &mut self.rng)
                    .unwrap_or_else(|e| format!("damage failed: {e}"));
                Some((name, vec![format!("n{}", random + 1), what], Active::Damaged(random)))
            }
            Fault::Hostile => {
                let attack = crate::run::hostile::Attack::start(procs.replica_addrs(), self.hostile_accepted.clone());
                Some((name, vec!["every replica".into()], Active::Hostile(std::sync::Arc::new(attack))))
            }
            Fault::RemoveAdd | Fault::TransferLeader => {
                let leader = leader?;
                let followers: Vec<usize> = running.iter().copied().filter(|&i| i != leader).collect();
                let target = *self.rng.pick(&followers);
                let (targets, active) = change_membership(procs, fault, target, admin);
                Some((name, targets, active))
            }
        }
    }

    /// The faults that can start now: partitions only with namespaces, worker faults only with a
    /// worker running, membership changes only with a known leader and every replica running (a
    /// follower to act on and a majority left without it), and no hostile peers in an upgrade
    /// run (its cluster runs open on purpose).
    fn possible(&self, procs: &Procs, leader_and_all_running: bool, workers_running: bool) -> Vec<Fault> {
        let n = procs.n_replicas();
        let partitions = procs.topology.netns().is_some() && n >= 2;
        self.faults
            .iter()
            .copied()
            .filter(|f| partitions || !f.is_partition())
            .filter(|f| f.family() != "worker" || workers_running)
            .filter(|f| f.family() != "membership" || (n >= 3 && leader_and_all_running))
            .filter(|f| *f != Fault::Hostile || !procs.is_upgrade_run())
            .collect()
    }

    /// Cuts the links `fault` names (`isolated` is the replica an isolation cuts off); the cut
    /// pairs, as `nA-nB`.
    fn partition(&mut self, procs: &Procs, fault: Fault, isolated: usize) -> Option<Vec<String>> {
        let n = procs.n_replicas();
        let order = self.subset(n, n);
        let cut_pairs: Vec<(usize, usize)> = match fault {
            Fault::IsolateLeader => (0..n).filter(|&j| j != isolated).map(|j| (isolated, j)).collect(),
            Fault::SplitMajorityMinority => {
                let (minority, majority) = order.split_at(n / 2);
                minority.iter().flat_map(|&a| majority.iter().map(move |&b| (a, b))).collect()
            }
            _ => {
                // order[0] is the bridge: it keeps its links to both halves.
                let (left, right) = order[1..].split_at((n - 1) / 2);
                left.iter().flat_map(|&a| right.iter().map(move |&b| (a, b))).collect()
            }
        };
        let ns = procs.topology.netns()?;
        let mut targets = Vec::new();
        for &(a, b) in &cut_pairs {
            if let Err(e) = ns.cut(a, b) {
                eprintln!("nemesis: {e}");
            }
            targets.push(format!("n{}-n{}", a + 1, b + 1));
        }
        Some(targets)
    }

    /// Kills a replica still on the old build (or `random`, when none is), which restarts on this
    /// build; the targets named, and the replica.
    fn upgrade_one(&mut self, procs: &mut Procs, running: &[usize], random: usize) -> (Vec<String>, usize) {
        let old: Vec<usize> = running.iter().copied().filter(|&i| !procs.runs_current_bin(i)).collect();
        let target = if old.is_empty() { random } else { *self.rng.pick(&old) };
        procs.kill_replica(target);
        let mut targets = node_names(&[target]);
        if !old.is_empty() {
            procs.set_replica_bin(target, procs.current_bin());
            targets.push("to this build".into());
        }
        (targets, target)
    }

    /// `k` distinct indexes out of `0..n`, in random order.
    fn subset(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }

    /// How long to hold the next fault, and the quiet time after it.
    pub fn durations(&mut self, hold_ms: (u64, u64), quiet_ms: (u64, u64)) -> (Duration, Duration) {
        (
            Duration::from_millis(self.rng.between(hold_ms.0, hold_ms.1)),
            Duration::from_millis(self.rng.between(quiet_ms.0, quiet_ms.1)),
        )
    }
}

/// Undoes `active`. Errors (a restart that failed) are returned as text for the timeline.
///
/// Runs inside `tokio::task::block_in_place` (see [`Nemesis::start`]).
/// `Ok(Some(text))`: healed by a repair worth noting (a damaged replica replaced).
pub fn heal(procs: &mut Procs, active: &Active, worker_slots: u32, admin: &Client) -> Result<Option<String>, String> {
    match active {
        Active::Done => {}
        Active::Hostile(attack) => attack.stop(),
        Active::Removed(i) => add_back(procs, *i, admin)?,
        Active::Damaged(i) => {
            let i = *i;
            procs.start_replica(i).map_err(|e| format!("restart n{}: {e}", i + 1))?;
            // A replica that finds its data dir damaged exits 1 at once; give it time to say so.
            if let Some(status) = procs.wait_exit(i, std::time::Duration::from_secs(5)) {
                if status.code() != Some(1) {
                    return Err(format!("damaged n{} ended with {status}, not a refusal", i + 1));
                }
                let handle = tokio::runtime::Handle::current();
                handle.block_on(admin.remove_member(i as u64 + 1)).map_err(|e| format!("remove n{}: {e}", i + 1))?;
                procs.wipe_replica(i).map_err(|e| format!("wipe n{}: {e}", i + 1))?;
                add_back(procs, i, admin)?;
                return Ok(Some(format!("n{} refused its damaged data dir ({status}); replaced it", i + 1)));
            }
        }
        Active::Killed(nodes) => {
            for &i in nodes {
                if procs.replica_state(i) == ProcState::Down {
                    procs.start_replica(i).map_err(|e| format!("restart n{}: {e}", i + 1))?;
                }
            }
        }
        Active::Paused(nodes) => {
            for &i in nodes {
                procs.resume_replica(i);
            }
        }
        Active::Partitioned => {
            if let Some(ns) = procs.topology.netns() {
                ns.heal()?;
            }
        }
        Active::WorkerKilled(k) => {
            if procs.worker_state(*k) == ProcState::Down {
                procs.start_worker(*k, worker_slots).map_err(|e| format!("restart w{}: {e}", k + 1))?;
            }
        }
        Active::WorkerPaused(k) => procs.resume_worker(*k),
    }
    Ok(None)
}

/// Starts replica `i` empty with `--join` (if down) and adds it back to the membership.
fn add_back(procs: &mut Procs, i: usize, admin: &Client) -> Result<(), String> {
    if procs.replica_state(i) == ProcState::Down {
        procs.start_replica_joining(i).map_err(|e| format!("start n{} to join: {e}", i + 1))?;
    }
    let addr = procs.topology.addr(i);
    tokio::runtime::Handle::current()
        .block_on(admin.add_member(i as u64 + 1, &addr))
        .map_err(|e| format!("add n{} back: {e}", i + 1))?;
    Ok(())
}

/// Moves leadership to `target`, or removes it from the membership (killed and wiped, to be
/// added back on heal); the targets named, and what healing undoes.
fn change_membership(procs: &mut Procs, fault: Fault, target: usize, admin: &Client) -> (Vec<String>, Active) {
    let handle = tokio::runtime::Handle::current();
    if fault == Fault::TransferLeader {
        let moved = handle.block_on(admin.transfer_leader(target as u64 + 1));
        let mut targets = node_names(&[target]);
        if let Err(e) = moved {
            targets.push(format!("failed: {e}"));
        }
        return (targets, Active::Done);
    }
    if let Err(e) = handle.block_on(admin.remove_member(target as u64 + 1)) {
        // Not removed (e.g. no leader right now): nothing to undo.
        return (vec![format!("n{}", target + 1), format!("remove failed: {e}")], Active::Done);
    }
    procs.kill_replica(target);
    if let Err(e) = procs.wipe_replica(target) {
        eprintln!("nemesis: wipe n{}: {e}", target + 1);
    }
    (node_names(&[target]), Active::Removed(target))
}
