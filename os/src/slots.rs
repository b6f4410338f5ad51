//! A/B system slots: the bookkeeping init keeps in `/data/etc/slots.json` (versions, which
//! slot is on trial, the last upgrade's outcome) and the pure transitions between its states.
//! Which slot the firmware boots is decided by UEFI variables ([`crate::sys::efi`]): the
//! new slot is booted once through `BootNext`, and only a commit puts it first in
//! `BootOrder`; this file only records what happened.
//!
//! Slot states as reported (`status` → `slots`): `active` (running, committed), `trying`
//! (installed and armed for its one trial boot, or running that trial), `good` (committed
//! earlier, the fallback), `bad` (failed its trial), `empty` (never written).

use serde::{Deserialize, Serialize};

/// The two slots, in disk order.
pub const SLOT_NAMES: [&str; 2] = ["A", "B"];
/// Where init keeps the bookkeeping.
pub const SLOTS_FILE: &str = "/data/etc/slots.json";

/// GPT name of a slot's EFI system partition.
pub fn esp_label(slot: &str) -> String {
    format!("AERGO-ESP-{slot}")
}

/// GPT name of a slot's system partition.
pub fn system_label(slot: &str) -> String {
    format!("{}-{slot}", crate::paths::SYSTEM_LABEL)
}

/// The other slot.
pub fn other(slot: &str) -> &'static str {
    if slot == "A" {
        "B"
    } else {
        "A"
    }
}

/// State of one slot on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Running and committed.
    Active,
    /// Installed and armed for one trial boot, or running that trial.
    Trying,
    /// Committed earlier; the fallback.
    Good,
    /// Failed its trial.
    Bad,
    /// Never written.
    #[default]
    Empty,
}

/// One slot as `status` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlotInfo {
    /// `A` or `B`.
    pub name: String,
    /// OS version installed in it (empty when empty).
    pub version: String,
    /// Its state.
    pub state: SlotState,
}

/// One slot as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlotRecord {
    /// `A` or `B`.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Stored state: `good`, `bad`, `trying` or `empty` (`active` is derived).
    pub state: SlotState,
}

/// The bookkeeping file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Slots {
    /// Both slots, A then B.
    pub slots: Vec<SlotRecord>,
    /// The slot on trial (armed or booted), if any.
    pub trying: Option<String>,
    /// Boots of the trial slot so far.
    pub trial_boots: u32,
    /// The last upgrade's outcome, one line.
    pub last_upgrade: Option<String>,
}

/// What init does after reading the bookkeeping at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootVerdict {
    /// Normal boot.
    Normal,
    /// This boot is the trial of the running slot: commit once healthy, else fall back.
    Trial,
    /// The trial slot's boot did not get as far as a commit; it was marked bad (the line
    /// says why, for the log).
    FellBack(String),
}

impl Slots {
    /// Fresh bookkeeping: `running` holds `version`, the other slot is empty.
    pub fn fresh(running: &str, version: &str) -> Self {
        let mut s = Slots::default();
        for n in SLOT_NAMES {
            s.slots.push(SlotRecord {
                name: n.to_string(),
                version: if n == running {
                    version.to_string()
                } else {
                    String::new()
                },
                state: if n == running {
                    SlotState::Good
                } else {
                    SlotState::Empty
                },
            });
        }
        s
    }

    /// Parses the file; anything unreadable starts afresh.
    pub fn parse_or_fresh(text: Option<&str>, running: &str, version: &str) -> Self {
        let mut s: Slots = text
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_else(|| Slots::fresh(running, version));
        for n in SLOT_NAMES {
            if s.get(n).is_none() {
                s.slots.push(SlotRecord {
                    name: n.to_string(),
                    ..SlotRecord::default()
                });
            }
        }
        s
    }

    /// The record of `slot`.
    pub fn get(&self, slot: &str) -> Option<&SlotRecord> {
        self.slots.iter().find(|r| r.name == slot)
    }

    fn get_mut(&mut self, slot: &str) -> Option<&mut SlotRecord> {
        self.slots.iter_mut().find(|r| r.name == slot)
    }

    fn set(&mut self, slot: &str, version: Option<&str>, state: SlotState) {
        if let Some(r) = self.get_mut(slot) {
            if let Some(v) = version {
                r.version = v.to_string();
            }
            r.state = state;
        }
    }

    /// At boot: `running` (holding `version`) started. Returns what this boot is.
    pub fn on_boot(&mut self, running: &str, version: &str) -> BootVerdict {
        match self.trying.clone() {
            Some(t) if t == running => {
                self.trial_boots = self.trial_boots.saturating_add(1);
                if self.trial_boots > 1 {
                    // A second boot of the trial slot without a commit: firmware that
                    // ignored BootNext, or a reboot during the trial. Give up on it now.
                    return self.fail_trial(running, "it booted twice without a commit");
                }
                self.set(running, Some(version), SlotState::Trying);
                BootVerdict::Trial
            }
            Some(t) => {
                let v = self.get(&t).map(|r| r.version.clone()).unwrap_or_default();
                let why = if self.trial_boots == 0 {
                    "it never started"
                } else {
                    "its trial boot ended without a commit (crash, reset or power cut)"
                };
                self.set(&t, None, SlotState::Bad);
                self.trying = None;
                self.trial_boots = 0;
                self.set(running, Some(version), SlotState::Good);
                let line = format!(
                    "fell back: slot {t} ({v}) is bad: {why}; running slot {running} ({version})"
                );
                self.last_upgrade = Some(line.clone());
                BootVerdict::FellBack(line)
            }
            None => {
                self.set(running, Some(version), SlotState::Good);
                BootVerdict::Normal
            }
        }
    }

    /// `slot` is about to be overwritten with `version`: empty until the write is done. The
    /// outcome line says the write did not finish until [`Slots::installed`] replaces it, so
    /// a power cut or crash in the middle of the write is reported after the next boot.
    pub fn writing(&mut self, slot: &str, version: &str) {
        self.set(slot, Some(""), SlotState::Empty);
        if self.trying.as_deref() == Some(slot) {
            self.trying = None;
        }
        self.last_upgrade = Some(format!(
            "upgrade to {version}: writing slot {slot} did not finish (power cut, crash or write error); slot {slot} is empty"
        ));
    }

    /// A verified bundle of `version` was written to `slot` and armed for one boot.
    pub fn installed(&mut self, slot: &str, version: &str, from: &str) {
        self.set(slot, Some(version), SlotState::Trying);
        self.trying = Some(slot.to_string());
        self.trial_boots = 0;
        self.last_upgrade = Some(format!(
            "installed {version} in slot {slot} (from {from}); it runs on trial at the next boot"
        ));
    }

    /// Writing `slot` failed part-way (`why`): it stays `empty` (its old contents are partly
    /// overwritten, so it is neither bootable nor a fallback) and the outcome says why.
    pub fn write_failed(&mut self, slot: &str, version: &str, why: &str) {
        self.set(slot, Some(""), SlotState::Empty);
        if self.trying.as_deref() == Some(slot) {
            self.trying = None;
            self.trial_boots = 0;
        }
        self.last_upgrade = Some(format!(
            "upgrade to {version} failed: {why}; slot {slot} is empty"
        ));
    }

    /// `slot` holds a complete `version` but could not be armed for its trial boot (`why`):
    /// it is marked `bad`, so nothing boots it and `status` shows the failure.
    pub fn arm_failed(&mut self, slot: &str, version: &str, why: &str) {
        self.set(slot, Some(version), SlotState::Bad);
        if self.trying.as_deref() == Some(slot) {
            self.trying = None;
            self.trial_boots = 0;
        }
        self.last_upgrade = Some(format!(
            "upgrade to {version} failed: slot {slot} was written but could not be armed for its trial boot ({why}); slot {slot} is bad and will not be booted"
        ));
    }

    /// The running trial slot passed: it is permanent.
    pub fn commit(&mut self, running: &str) -> String {
        let v = self
            .get(running)
            .map(|r| r.version.clone())
            .unwrap_or_default();
        self.set(running, None, SlotState::Good);
        self.trying = None;
        self.trial_boots = 0;
        let line = format!("upgraded: slot {running} ({v}) committed");
        self.last_upgrade = Some(line.clone());
        line
    }

    /// The running trial slot failed (`why`): marked bad; the caller reboots into the other.
    pub fn fail_trial(&mut self, running: &str, why: &str) -> BootVerdict {
        let v = self
            .get(running)
            .map(|r| r.version.clone())
            .unwrap_or_default();
        self.set(running, None, SlotState::Bad);
        self.trying = None;
        self.trial_boots = 0;
        let line = format!(
            "fell back: slot {running} ({v}) is bad: {why}; rebooting into slot {}",
            other(running)
        );
        self.last_upgrade = Some(line.clone());
        BootVerdict::FellBack(line)
    }

    /// The slots as `status` shows them while `running` runs.
    pub fn report(&self, running: &str) -> Vec<SlotInfo> {
        SLOT_NAMES
            .iter()
            .map(|n| {
                let r = self.get(n).cloned().unwrap_or_default();
                let state = match r.state {
                    SlotState::Good if *n == running => SlotState::Active,
                    s => s,
                };
                SlotInfo {
                    name: n.to_string(),
                    version: r.version,
                    state,
                }
            })
            .collect()
    }

    /// JSON text for the file.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(s: &Slots, running: &str) -> Vec<(String, String, SlotState)> {
        s.report(running)
            .into_iter()
            .map(|i| (i.name, i.version, i.state))
            .collect()
    }

    #[test]
    fn upgrade_commit_then_broken_upgrade_falls_back() {
        let mut s = Slots::parse_or_fresh(None, "A", "1.0.0");
        assert_eq!(s.on_boot("A", "1.0.0"), BootVerdict::Normal);
        assert_eq!(
            states(&s, "A"),
            vec![
                ("A".into(), "1.0.0".into(), SlotState::Active),
                ("B".into(), "".into(), SlotState::Empty)
            ]
        );
        s.installed("B", "1.1.0", "1.0.0");
        assert_eq!(s.report("A")[1].state, SlotState::Trying);
        // The trial boot of B, then the commit.
        assert_eq!(s.on_boot("B", "1.1.0"), BootVerdict::Trial);
        assert_eq!(s.report("B")[1].state, SlotState::Trying);
        assert!(s.commit("B").contains("committed"));
        assert_eq!(s.report("B")[1].state, SlotState::Active);
        assert_eq!(s.report("B")[0].state, SlotState::Good);
        // A later reboot keeps B.
        assert_eq!(s.on_boot("B", "1.1.0"), BootVerdict::Normal);
        // C into A: its trial fails; init marks it bad and reboots into B.
        s.installed("A", "1.2.0", "1.1.0");
        assert_eq!(s.on_boot("A", "1.2.0"), BootVerdict::Trial);
        assert!(matches!(
            s.fail_trial("A", "node not healthy"),
            BootVerdict::FellBack(_)
        ));
        assert_eq!(s.on_boot("B", "1.1.0"), BootVerdict::Normal);
        assert_eq!(
            states(&s, "B"),
            vec![
                ("A".into(), "1.2.0".into(), SlotState::Bad),
                ("B".into(), "1.1.0".into(), SlotState::Active)
            ]
        );
        assert!(s.last_upgrade.as_deref().unwrap().contains("1.2.0"));
        // Through the file.
        let back = Slots::parse_or_fresh(Some(&s.to_json()), "B", "1.1.0");
        assert_eq!(back, s);
    }

    #[test]
    fn a_crash_or_power_cut_during_the_trial_is_a_fallback() {
        let mut s = Slots::fresh("A", "1.0.0");
        s.installed("B", "2.0.0", "1.0.0");
        assert_eq!(s.on_boot("B", "2.0.0"), BootVerdict::Trial);
        // The firmware's BootNext is spent: the next boot is A.
        let v = s.on_boot("A", "1.0.0");
        assert!(
            matches!(&v, BootVerdict::FellBack(l) if l.contains("without a commit")),
            "{v:?}"
        );
        assert_eq!(s.report("A")[1].state, SlotState::Bad);
        assert_eq!(s.report("A")[0].state, SlotState::Active);
        assert_eq!(s.trying, None);
    }

    #[test]
    fn a_power_cut_while_writing_leaves_the_slot_empty() {
        let mut s = Slots::fresh("A", "1.0.0");
        s.installed("B", "2.0.0", "1.0.0");
        // B is rewritten (a retry) and the power goes during the write: after the next boot
        // of A, B is empty, nothing is on trial and the outcome says so.
        s.writing("B", "2.0.1");
        let mut after = Slots::parse_or_fresh(Some(&s.to_json()), "A", "1.0.0");
        assert_eq!(after.on_boot("A", "1.0.0"), BootVerdict::Normal);
        assert_eq!(
            states(&after, "A"),
            vec![
                ("A".into(), "1.0.0".into(), SlotState::Active),
                ("B".into(), "".into(), SlotState::Empty)
            ]
        );
        assert_eq!(after.trying, None);
        assert!(after
            .last_upgrade
            .as_deref()
            .unwrap()
            .contains("upgrade to 2.0.1: writing slot B did not finish"));
        // A finished write replaces the line.
        after.writing("B", "2.0.1");
        after.installed("B", "2.0.1", "1.0.0");
        assert!(after
            .last_upgrade
            .as_deref()
            .unwrap()
            .starts_with("installed 2.0.1"));
    }

    #[test]
    fn a_failed_write_or_arming_is_never_reported_good() {
        let mut s = Slots::fresh("A", "1.0.0");
        s.writing("B", "2.0.0");
        s.write_failed(
            "B",
            "2.0.0",
            "writing AERGO-SYSTEM-B: No space left on device",
        );
        assert_eq!(s.report("A")[1].state, SlotState::Empty);
        assert_eq!(s.trying, None);
        let l = s.last_upgrade.clone().unwrap();
        assert!(l.contains("2.0.0 failed") && l.contains("No space"), "{l}");
        // Written and recorded, but BootNext could not be set: bad, not on trial, and the
        // next boot of A keeps it so.
        s.writing("B", "2.0.0");
        s.installed("B", "2.0.0", "1.0.0");
        s.arm_failed("B", "2.0.0", "writing BootNext: Input/output error");
        assert_eq!(s.trying, None);
        let mut after = Slots::parse_or_fresh(Some(&s.to_json()), "A", "1.0.0");
        assert_eq!(after.on_boot("A", "1.0.0"), BootVerdict::Normal);
        assert_eq!(
            states(&after, "A"),
            vec![
                ("A".into(), "1.0.0".into(), SlotState::Active),
                ("B".into(), "2.0.0".into(), SlotState::Bad)
            ]
        );
        assert!(after
            .last_upgrade
            .as_deref()
            .unwrap()
            .contains("could not be armed"));
    }

    #[test]
    fn a_trial_slot_booted_twice_is_given_up() {
        let mut s = Slots::fresh("A", "1.0.0");
        s.installed("B", "2.0.0", "1.0.0");
        assert_eq!(s.on_boot("B", "2.0.0"), BootVerdict::Trial);
        assert!(matches!(s.on_boot("B", "2.0.0"), BootVerdict::FellBack(_)));
        assert_eq!(s.get("B").unwrap().state, SlotState::Bad);
    }

    #[test]
    fn garbage_starts_afresh() {
        let s = Slots::parse_or_fresh(Some("not json"), "B", "3");
        assert_eq!(s.get("B").unwrap().version, "3");
        assert_eq!(s.get("A").unwrap().state, SlotState::Empty);
        assert_eq!(esp_label("B"), "AERGO-ESP-B");
        assert_eq!(system_label("A"), "AERGO-SYSTEM-A");
    }
}
