//! How the machine keeps concurrency keys (`crate::concurrency` says what they are): the
//! `keys_in_use` index and the check a plan and an assignment make against it.

use crate::concurrency::{Concurrency, KeyUse};
use crate::machine::StateMachine;
use crate::task::{Task, TaskId, TaskState};
use std::collections::BTreeMap;

impl StateMachine {
    /// Gives new task `id` its concurrency key (nothing for `None`), counted from its state now.
    pub(crate) fn limit_concurrency(&mut self, id: TaskId, concurrency: Option<Concurrency>) {
        let Some(c) = concurrency else { return };
        let task = self.tasks.get_mut(&id).expect("a new task");
        task.concurrency = Some(Box::new(c));
        self.keys_in_use.count(task, task.state, 1);
    }

    /// Schedules with a concurrency key, by name: what the format layer writes beside the state
    /// from format 9 on.
    pub fn schedule_concurrency_entries(&self) -> impl Iterator<Item = (&str, &Concurrency)> {
        self.schedules.iter().filter_map(|(name, s)| Some((name.as_str(), s.concurrency.as_ref()?)))
    }

    /// Restores what a snapshot recorded beside the state for schedules (the format layer).
    pub fn restore_schedule_concurrency(&mut self, entries: Vec<(String, Concurrency)>) -> Result<(), String> {
        for (name, c) in entries {
            c.validate()?;
            let Some(schedule) = self.schedules.get_mut(&name) else {
                return Err(format!("a concurrency key for unknown schedule {name:?}"));
            };
            schedule.concurrency = Some(c);
        }
        Ok(())
    }

    /// Concurrency keys in use, with their counts (`raftsched keys`).
    pub fn keys_in_use(&self) -> impl Iterator<Item = (&str, &KeyUse)> {
        self.keys_in_use.0.iter().map(|(k, u)| (k.as_str(), u))
    }

    /// Tasks with a concurrency key, by id: what the format layer writes beside the state from
    /// format 7 on.
    pub fn concurrency_entries(&self) -> impl Iterator<Item = (TaskId, &Concurrency)> {
        self.tasks.iter().filter_map(|(id, t)| Some((*id, t.concurrency.as_deref()?)))
    }

    /// Restores what a snapshot recorded beside the state (the format layer's decoder): each task's
    /// concurrency key, then the keys-in-use index.
    pub fn restore_concurrency(&mut self, entries: Vec<(TaskId, Concurrency)>) -> Result<(), String> {
        for (id, c) in entries {
            c.validate()?;
            let Some(task) = self.tasks.get_mut(&id) else {
                return Err(format!("a concurrency key for unknown task {id}"));
            };
            task.concurrency = Some(Box::new(c));
        }
        self.keys_in_use = self.count_keys_in_use();
        Ok(())
    }

    /// The keys-in-use index as the tasks say it should be.
    pub(crate) fn count_keys_in_use(&self) -> KeysInUse {
        let mut keys = KeysInUse::default();
        for task in self.tasks.values() {
            keys.count(task, task.state, 1);
        }
        keys
    }

    /// The keys-in-use index matches the tasks. (Each assignment was checked against its task's
    /// own limit when it applied; tasks of one key normally share one limit.)
    pub(crate) fn check_concurrency(&self) -> Result<(), String> {
        let expected = self.count_keys_in_use();
        let counts = |k: &KeysInUse| k.0.iter().map(|(key, u)| (key.clone(), u.held, u.queued)).collect::<Vec<_>>();
        if counts(&expected) != counts(&self.keys_in_use) {
            return Err("the concurrency keys index is out of step with the tasks".to_string());
        }
        Ok(())
    }
}

/// Concurrency keys in use, by key: derived from the tasks, never encoded, equal whatever it holds
/// (rebuilt by `StateMachine::restore_concurrency`).
#[derive(Clone, Default)]
pub(crate) struct KeysInUse(pub(crate) BTreeMap<String, KeyUse>);

impl KeysInUse {
    /// Counts `task` as in `state` (`sign` +1) or no longer (-1).
    pub(crate) fn count(&mut self, task: &Task, state: TaskState, sign: i32) {
        let Some(c) = task.concurrency.as_deref() else { return };
        if state.is_terminal() {
            return;
        }
        let entry = self.0.entry(c.key.clone()).or_default();
        let n = if state.is_held() { &mut entry.held } else { &mut entry.queued };
        *n = n.checked_add_signed(sign).expect("key use counts stay in step");
        if sign > 0 && task.id >= entry.newest {
            (entry.newest, entry.limit) = (task.id, c.limit);
        }
        if entry.held == 0 && entry.queued == 0 {
            self.0.remove(&c.key);
        }
    }

    /// Whether one more task with `c` may be held now, given `planned` already planned for its key.
    pub(crate) fn has_room(&self, c: &Concurrency, planned: u32) -> bool {
        self.0.get(&c.key).map_or(0, |u| u.held) + planned < c.limit
    }
}
