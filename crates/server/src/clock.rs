//! Time bounded by the cluster: wall-clock readings exchanged on Raft traffic, and this replica's
//! skew from the median of the members' clocks.
//!
//! Every Raft request and reply between replicas carries the sender's wall clock
//! (`raftsched-clock-ms`, Unix milliseconds), and a leader's requests also its own skew estimate
//! (`raftsched-skew-ms`). From them each replica keeps, per peer, the peer's clock minus its own
//! (`offset_ms`):
//! - from a reply to its own request, NTP's way: the peer's reading minus the midpoint of send and
//!   receive times, so network delay cancels out (a leader has such a reading of every follower
//!   every heartbeat);
//! - from a request, one way: the reading minus the arrival time. Delay only ever lowers such an
//!   offset, and a stalled receiver (a loaded machine, a paused process) delays by seconds, so the
//!   offset kept is the largest of the one-way readings of the last one to two seconds
//!   (`ONE_WAY_WINDOW_MS`), and none replaces a round-trip reading younger than that.
//!
//! A round trip longer than half the bound is not used at all (the midpoint may then be off by a
//! quarter of the bound): a leader whose process stalled for a second once read its followers a
//! second off and handed leadership on with nothing wrong with any clock.
//!
//! The skew of a set of clocks is this replica's own minus their median (the median of its own
//! reading, offset 0, and the fresh offsets): positive means ahead. With an even number of clocks
//! the middle value nearer to this replica's own is taken, so two clocks that disagree never make
//! either one "out of bounds": without a third there is no telling which is wrong. A leader
//! computes it over the voters it has fresh readings of (at least a majority, itself included;
//! otherwise the skew is unknown). A follower knows the leader's offset and the leader's own
//! estimate, so its skew is `leader_skew - leader_offset`.
//!
//! A leader whose skew is unknown or beyond `clock_skew_ms_max` proposes no time-dependent
//! decision and hands leadership on (`leader_loop.rs`); a candidate whose clock is beyond it gets
//! no pre-vote (`election.rs`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use raftsched_store::NodeId;
use tokio::time::Instant;

pub const CLOCK_HEADER: &str = "raftsched-clock-ms";
pub const SKEW_HEADER: &str = "raftsched-skew-ms";

/// Default of `clock_skew_ms_max`. Readings over heartbeats are accurate to well under a
/// millisecond on a LAN and NTP keeps hosts within tens of milliseconds, so 500 ms is only ever
/// crossed by a clock that is really wrong; and since schedule occurrences are at least a second
/// apart, a leader within 500 ms of the median fires at worst one occurrence half a period early.
pub const CLOCK_SKEW_MS_MAX_DEFAULT: u64 = 500;

/// A reading older than this is not used: a clock can be stepped (NTP, an operator) at any time.
pub const READING_AGE_MS_MAX: u64 = 5_000;

/// This machine's wall clock, Unix milliseconds (0 before 1970: a broken clock).
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The median of this replica's clock (offset 0) and `offsets` (peer minus own), taking of two
/// middle values the one nearer to 0. Returned as an offset from this replica's clock.
pub fn median_offset(offsets: &[i64]) -> i64 {
    let mut all: Vec<i64> = offsets.to_vec();
    all.push(0);
    all.sort_unstable();
    let n = all.len();
    if n % 2 == 1 {
        return all[n / 2];
    }
    let (a, b) = (all[n / 2 - 1], all[n / 2]);
    if a.unsigned_abs() <= b.unsigned_abs() {
        a
    } else {
        b
    }
}

/// Whether this replica's clock may decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Too few fresh readings to tell.
    Unknown,
    /// Skew (own minus median, ms) within the bound.
    InBounds(i64),
    /// Skew beyond the bound.
    OutOfBounds(i64),
}

impl Verdict {
    pub fn skew_ms(self) -> Option<i64> {
        match self {
            Verdict::Unknown => None,
            Verdict::InBounds(s) | Verdict::OutOfBounds(s) => Some(s),
        }
    }

    fn of(skew_ms: i64, bound_ms: u64) -> Verdict {
        if skew_ms.unsigned_abs() > bound_ms {
            Verdict::OutOfBounds(skew_ms)
        } else {
            Verdict::InBounds(skew_ms)
        }
    }
}

/// The skew of this replica (a leader) from the median of itself and `offsets`, the fresh
/// readings of other voters; unknown unless they and it make a majority of `n_voters`.
pub fn leader_verdict(offsets: &[i64], n_voters: usize, bound_ms: u64) -> Verdict {
    if offsets.len() + 1 < n_voters / 2 + 1 {
        return Verdict::Unknown;
    }
    Verdict::of(-median_offset(offsets), bound_ms)
}

/// One-way readings are kept over windows this long (the current and the previous one).
pub const ONE_WAY_WINDOW_MS: u64 = 1_000;

#[derive(Clone, Copy, Debug)]
struct Reading {
    offset_ms: i64,
    /// The sender's own skew estimate, when it sent one (a leader does).
    their_skew_ms: Option<i64>,
    at: Instant,
    source: Source,
}

#[derive(Clone, Copy, Debug)]
enum Source {
    RoundTrip,
    /// The largest one-way offset of the window that began at `started`, and of the one before.
    OneWay {
        started: Instant,
        max_ms: i64,
        previous_max_ms: Option<i64>,
    },
}

fn window() -> std::time::Duration {
    std::time::Duration::from_millis(ONE_WAY_WINDOW_MS)
}

/// The reading after a one-way `offset_ms` arrived at `now`, given the peer's last reading.
fn one_way(last: Option<&Reading>, offset_ms: i64, their_skew_ms: Option<i64>, now: Instant) -> Reading {
    let (started, max_ms, previous_max_ms) = match last {
        // A round trip cancelled the delay this reading carries: keep its offset a while.
        Some(r) if matches!(r.source, Source::RoundTrip) && now.saturating_duration_since(r.at) < window() => {
            return Reading { their_skew_ms, ..*r };
        }
        Some(Reading { source: Source::OneWay { started, max_ms, previous_max_ms }, .. }) => {
            let age = now.saturating_duration_since(*started);
            if age < window() {
                (*started, offset_ms.max(*max_ms), *previous_max_ms)
            } else if age < 2 * window() {
                (*started + window(), offset_ms, Some(*max_ms))
            } else {
                (now, offset_ms, None)
            }
        }
        _ => (now, offset_ms, None),
    };
    let source = Source::OneWay { started, max_ms, previous_max_ms };
    let offset_ms = previous_max_ms.map_or(max_ms, |p| p.max(max_ms));
    Reading { offset_ms, their_skew_ms, at: now, source }
}

/// The readings this replica holds, and the bound.
pub struct Clocks {
    pub bound_ms: u64,
    readings: Mutex<BTreeMap<NodeId, Reading>>,
    published: Mutex<Verdict>,
}

impl Clocks {
    pub fn new(bound_ms: u64) -> Clocks {
        Clocks { bound_ms, readings: Mutex::default(), published: Mutex::new(Verdict::Unknown) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Reading>> {
        self.readings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reading of `peer`'s clock (`their_ms`) that arrived with a request at `arrived_ms`.
    pub fn heard(&self, peer: NodeId, their_ms: u64, their_skew_ms: Option<i64>, arrived_ms: u64) {
        self.heard_at(peer, their_ms, their_skew_ms, arrived_ms, Instant::now());
    }

    fn heard_at(&self, peer: NodeId, their_ms: u64, their_skew_ms: Option<i64>, arrived_ms: u64, now: Instant) {
        let offset_ms = their_ms as i64 - arrived_ms as i64;
        let mut readings = self.lock();
        let reading = one_way(readings.get(&peer), offset_ms, their_skew_ms, now);
        readings.insert(peer, reading);
    }

    /// A reading of `peer`'s clock in its reply to a request sent at `sent_ms`, received at
    /// `received_ms` (this replica's wall clock). Ignored when the round trip took longer than
    /// half the bound (or the own clock stepped back meanwhile).
    pub fn replied(&self, peer: NodeId, their_ms: u64, sent_ms: u64, received_ms: u64) {
        let round_trip_ms = received_ms.checked_sub(sent_ms);
        if round_trip_ms.is_none_or(|rtt| rtt > self.bound_ms / 2) {
            return;
        }
        let midpoint = (sent_ms as i64 + received_ms as i64) / 2;
        let offset_ms = their_ms as i64 - midpoint;
        let mut readings = self.lock();
        let their_skew_ms = readings.get(&peer).and_then(|r| r.their_skew_ms);
        readings.insert(peer, Reading { offset_ms, their_skew_ms, at: Instant::now(), source: Source::RoundTrip });
    }

    /// The fresh offsets of `peers`.
    pub fn offsets(&self, peers: impl Iterator<Item = NodeId>) -> Vec<(NodeId, i64)> {
        let readings = self.lock();
        peers.filter_map(|p| readings.get(&p).filter(|r| fresh(r)).map(|r| (p, r.offset_ms))).collect()
    }

    /// This replica's verdict: as a leader over the other voters' readings; otherwise from the
    /// leader's reading and its own estimate.
    pub fn verdict(&self, me: NodeId, leader: Option<NodeId>, voters: &[NodeId]) -> Verdict {
        if leader == Some(me) {
            let offsets: Vec<i64> =
                self.offsets(voters.iter().copied().filter(|v| *v != me)).into_iter().map(|(_, o)| o).collect();
            return leader_verdict(&offsets, voters.len(), self.bound_ms);
        }
        let readings = self.lock();
        match leader.and_then(|l| readings.get(&l)).filter(|r| fresh(r)) {
            Some(Reading { offset_ms, their_skew_ms: Some(skew), .. }) => Verdict::of(skew - offset_ms, self.bound_ms),
            _ => Verdict::Unknown,
        }
    }

    /// This replica's verdict as leader from readings taken since `since` (when it began to
    /// lead) only: what it reads of its followers in its own term.
    pub fn leader_verdict_since(&self, me: NodeId, voters: &[NodeId], since: Instant) -> Verdict {
        let readings = self.lock();
        let offsets: Vec<i64> = voters
            .iter()
            .filter(|v| **v != me)
            .filter_map(|v| readings.get(v))
            .filter(|r| r.at >= since && fresh(r))
            .map(|r| r.offset_ms)
            .collect();
        leader_verdict(&offsets, voters.len(), self.bound_ms)
    }

    /// How many of `voters` other than `me` ever sent a clock reading (builds before clock
    /// readings send none).
    pub fn readers(&self, me: NodeId, voters: &[NodeId]) -> usize {
        let readings = self.lock();
        voters.iter().filter(|v| **v != me && readings.contains_key(v)).count()
    }

    /// The skew of a peer whose clock is `offset_ms` from this replica's, given this replica's own
    /// skew; `None` when that is unknown.
    pub fn peer_skew_of(own_skew_ms: Option<i64>, offset_ms: i64) -> Option<i64> {
        own_skew_ms.map(|s| s + offset_ms)
    }

    /// Publishes this replica's verdict (for the skew sent on its requests, metrics and status),
    /// logging when it crosses the bound.
    pub fn publish(&self, verdict: Verdict) {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let was_out = matches!(*published, Verdict::OutOfBounds(_));
        match verdict {
            Verdict::OutOfBounds(skew) if !was_out => tracing::warn!(
                skew_ms = skew,
                clock_skew_ms_max = self.bound_ms,
                "clock skew: this replica's clock is {:.3} s off the median of the cluster's clocks",
                skew as f64 / 1000.0
            ),
            Verdict::InBounds(skew) if was_out => {
                tracing::info!(skew_ms = skew, "clock skew: back within clock_skew_ms_max {}", self.bound_ms)
            }
            _ => {}
        }
        *published = verdict;
    }

    /// The cluster's time as this replica knows it: its own clock corrected by its published
    /// skew (its own clock while the skew is unknown). What a leader stamps on entries and plans
    /// with, so a leader whose clock is wrong still stamps the cluster's time.
    pub fn cluster_now_ms(&self) -> u64 {
        let skew = self.published().skew_ms().unwrap_or(0);
        (wall_ms() as i64).saturating_sub(skew).max(0) as u64
    }

    /// The verdict last published.
    pub fn published(&self) -> Verdict {
        *self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn fresh(r: &Reading) -> bool {
    r.at.elapsed().as_millis() as u64 <= READING_AGE_MS_MAX
}

/// Reads the clock (and skew) headers of a message.
pub fn read_headers(meta: &tonic::metadata::MetadataMap) -> (Option<u64>, Option<i64>) {
    let get = |key| meta.get(key).and_then(|v| v.to_str().ok());
    (get(CLOCK_HEADER).and_then(|v| v.parse().ok()), get(SKEW_HEADER).and_then(|v| v.parse().ok()))
}

/// Stamps this replica's clock (and, when known, its skew) on a message.
pub fn write_headers(meta: &mut tonic::metadata::MetadataMap, skew_ms: Option<i64>) {
    // Digits only: always valid metadata.
    if let Ok(v) = wall_ms().to_string().parse() {
        meta.insert(CLOCK_HEADER, v);
    }
    if let Some(v) = skew_ms.and_then(|s| s.to_string().parse().ok()) {
        meta.insert(SKEW_HEADER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_leans_to_the_own_clock() {
        assert_eq!(median_offset(&[]), 0);
        assert_eq!(median_offset(&[-86_400_000, -86_400_000]), -86_400_000);
        assert_eq!(median_offset(&[-86_400_000]), 0, "two clocks that disagree: no telling which is wrong");
        assert_eq!(median_offset(&[3_600_000]), 0);
        assert_eq!(median_offset(&[10, 20, 30]), 10);
        assert_eq!(median_offset(&[-5, 7]), 0);
    }

    #[test]
    fn a_leader_a_day_ahead_is_out_of_bounds_and_one_wrong_follower_does_not_matter() {
        let day = 86_400_000;
        assert_eq!(leader_verdict(&[-day, -day + 3], 3, 500), Verdict::OutOfBounds(day - 3));
        assert_eq!(leader_verdict(&[-day, 2], 3, 500), Verdict::InBounds(0));
        assert_eq!(leader_verdict(&[3_600_000, 3_600_010], 3, 500), Verdict::OutOfBounds(-3_600_000));
        assert_eq!(leader_verdict(&[120, -80], 3, 500), Verdict::InBounds(0));
        assert_eq!(leader_verdict(&[-400, -450], 3, 500), Verdict::InBounds(400));
    }

    #[test]
    fn too_few_readings_are_unknown() {
        assert_eq!(leader_verdict(&[], 3, 500), Verdict::Unknown);
        assert_eq!(leader_verdict(&[5], 3, 500), Verdict::InBounds(0));
        assert_eq!(leader_verdict(&[5], 5, 500), Verdict::Unknown);
        assert_eq!(leader_verdict(&[], 1, 500), Verdict::InBounds(0));
    }

    #[test]
    fn a_follower_takes_the_leaders_estimate() {
        let clocks = Clocks::new(500);
        // The leader (1) reads 1,000 ms ahead of this follower (2) and says it is itself 1,000 ms
        // ahead of the median: this follower is on time.
        clocks.heard(1, 11_000, Some(1_000), 10_000);
        assert_eq!(clocks.verdict(2, Some(1), &[1, 2, 3]), Verdict::InBounds(0));
        // Said to be on time, it reads this follower an hour ahead (seconds later: a lower one-way
        // offset counts only once the higher one has left the window).
        let later = Instant::now() + std::time::Duration::from_millis(3 * ONE_WAY_WINDOW_MS);
        clocks.heard_at(1, 10_000, Some(0), 3_610_000, later);
        assert_eq!(clocks.verdict(2, Some(1), &[1, 2, 3]), Verdict::OutOfBounds(3_600_000));
        // From an old build no estimate comes along: unknown.
        clocks.heard_at(1, 10_000, None, 10_000, later);
        assert_eq!(clocks.verdict(2, Some(1), &[1, 2, 3]), Verdict::Unknown);
    }

    #[test]
    fn round_trips_cancel_the_delay() {
        let clocks = Clocks::new(500);
        // Sent at 1,000, answered at 1,040 by a clock that read 1,020: the same clock.
        clocks.replied(2, 1_020, 1_000, 1_040);
        clocks.replied(3, 1_020, 1_000, 1_040);
        assert_eq!(clocks.offsets([2, 3].into_iter()), vec![(2, 0), (3, 0)]);
        assert_eq!(clocks.verdict(1, Some(1), &[1, 2, 3]), Verdict::InBounds(0));
        // A two-second round trip (a stalled process) says nothing: the reading stays.
        clocks.replied(2, 3_000, 2_000, 4_000);
        assert_eq!(clocks.offsets([2].into_iter()), vec![(2, 0)]);
    }

    #[test]
    fn a_stalled_receiver_does_not_read_a_one_way_clock_behind() {
        let clocks = Clocks::new(500);
        let start = Instant::now();
        let at = |ms| start + std::time::Duration::from_millis(ms);
        clocks.heard_at(1, 10_000, Some(0), 10_000, at(0));
        // This replica stalled 1.1 s: the leader's heartbeats arrive late, reading 1.1 s behind.
        clocks.heard_at(1, 10_100, Some(0), 11_200, at(1_200));
        assert_eq!(clocks.offsets([1].into_iter()), vec![(1, 0)], "the earlier, higher reading is kept");
        // Still behind two windows on: the leader's clock really is behind.
        clocks.heard_at(1, 12_100, Some(0), 13_200, at(3_200));
        assert_eq!(clocks.offsets([1].into_iter()), vec![(1, -1_100)]);
    }
}
