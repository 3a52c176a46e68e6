//! The sign-in gate: how many password checks run at once, and who may wait for one. A
//! flood spread over many addresses must neither keep staff out nor guess fast at one
//! account, so the gate is fair rather than first come, first served:
//!
//! - one check at a time per sender (an IPv4 address, an IPv6 /64: [`sign_in_key`]);
//! - one at a time per account for senders that have not signed in lately (a spread flood
//!   against one account is one guess at a time, slowed down further by
//!   [`crate::auth::staff::slow_down`]);
//! - places kept for senders with a recent success, which strangers cannot take.
//!
//! Past that a sign-in is turned away at once (429 or 503) rather than queued: a queue that
//! grows with a flood costs memory and keeps everyone waiting.
//!
//! [`sign_in_key`]: crate::domain::sign_in_key

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a sender that signed in stays one whose sign-ins are let through first.
pub const RECENT_SUCCESS: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many senders with a recent success are remembered (the oldest go first).
pub const REMEMBERED_SENDERS: usize = 4096;

/// Why the gate turned a sign-in away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A sign-in from the same address (or IPv6 /64) is being checked.
    SenderBusy,
    /// A sign-in for the same account from an address without a recent success is being
    /// checked.
    AccountBusy,
    /// Every place is taken.
    Full,
}

impl Refused {
    /// What the person signing in is told.
    pub fn message(self) -> &'static str {
        match self {
            Refused::SenderBusy => {
                "A sign-in from your address is already being checked. Wait for it, then try \
                 again."
            }
            Refused::AccountBusy => {
                "Another sign-in for this account is being checked. Try again in a few seconds."
            }
            Refused::Full => {
                "The panel is busy checking other sign-ins. Try again in a few seconds."
            }
        }
    }
}

#[derive(Default)]
struct Taken {
    open: usize,
    kept: usize,
    senders: HashSet<String>,
    accounts: HashSet<String>,
    recent: HashMap<String, Instant>,
}

/// See the module's documentation.
pub struct SignInGate {
    running: Arc<tokio::sync::Semaphore>,
    taken: Mutex<Taken>,
    open_places: usize,
    kept_places: usize,
}

/// A sign-in's place in the gate; leaving it (drop) frees the place and its sender's and
/// account's turn.
pub struct Place<'a> {
    gate: &'a SignInGate,
    sender: String,
    account: Option<String>,
    kept: bool,
    known: bool,
}

impl SignInGate {
    /// One check per core at a time; twice as many places for anyone, and one per core more
    /// kept for senders with a recent success.
    pub fn new() -> SignInGate {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        SignInGate {
            running: Arc::new(tokio::sync::Semaphore::new(cores)),
            taken: Mutex::default(),
            open_places: 2 * cores,
            kept_places: cores,
        }
    }

    fn taken(&self) -> std::sync::MutexGuard<'_, Taken> {
        self.taken.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a sign-in from `sender` (a [`crate::domain::sign_in_key`]) to `account`,
    /// or why not.
    pub fn admit(&self, sender: &str, account: &str) -> Result<Place<'_>, Refused> {
        let mut taken = self.taken();
        let known = taken
            .recent
            .get(sender)
            .is_some_and(|at| at.elapsed() < RECENT_SUCCESS);
        if taken.senders.contains(sender) {
            return Err(Refused::SenderBusy);
        }
        if !known && taken.accounts.contains(account) {
            return Err(Refused::AccountBusy);
        }
        let kept = if taken.open < self.open_places {
            taken.open += 1;
            false
        } else if known && taken.kept < self.kept_places {
            taken.kept += 1;
            true
        } else {
            return Err(Refused::Full);
        };
        taken.senders.insert(sender.to_owned());
        let account = (!known).then(|| account.to_owned());
        if let Some(account) = &account {
            taken.accounts.insert(account.clone());
        }
        Ok(Place {
            gate: self,
            sender: sender.to_owned(),
            account,
            kept,
            known,
        })
    }

    /// Remembers that `sender` signed in: its sign-ins are let through first for
    /// [`RECENT_SUCCESS`]. At most [`REMEMBERED_SENDERS`] are kept, forgetting the oldest.
    pub fn remember(&self, sender: &str, at: Instant) {
        let mut taken = self.taken();
        if !taken.recent.contains_key(sender) && taken.recent.len() >= REMEMBERED_SENDERS {
            let oldest = taken
                .recent
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                taken.recent.remove(&oldest);
            }
        }
        let newest = taken.recent.entry(sender.to_owned()).or_insert(at);
        *newest = (*newest).max(at);
    }
}

impl Default for SignInGate {
    fn default() -> Self {
        SignInGate::new()
    }
}

impl Place<'_> {
    /// Whether the sender signed in lately (it is not slowed down).
    pub fn known(&self) -> bool {
        self.known
    }

    /// Checks `password` against `stored` when a core is free, off the async threads.
    pub async fn verify(&self, password: String, stored: String) -> bool {
        let Ok(_running) = self.gate.running.clone().acquire_owned().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || super::password::verify(&password, &stored))
            .await
            .unwrap_or(false)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut taken = self.gate.taken();
        if self.kept {
            taken.kept -= 1;
        } else {
            taken.open -= 1;
        }
        taken.senders.remove(&self.sender);
        if let Some(account) = &self.account {
            taken.accounts.remove(account);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::{REMEMBERED_SENDERS, Refused, SignInGate};

    fn gate(cores: usize) -> SignInGate {
        SignInGate {
            running: std::sync::Arc::new(tokio::sync::Semaphore::new(cores)),
            taken: std::sync::Mutex::default(),
            open_places: 2 * cores,
            kept_places: cores,
        }
    }

    #[test]
    fn one_check_per_sender_and_per_account_from_strangers_and_places_kept_for_known_senders() {
        let gate = gate(1);
        gate.remember("198.51.100.7", Instant::now());
        let first = gate.admit("203.0.113.1", "admin").unwrap();
        assert!(!first.known());
        // The same sender (an IPv6 /64 is one key) waits for its own check.
        assert_eq!(
            gate.admit("203.0.113.1", "other").err(),
            Some(Refused::SenderBusy)
        );
        // Another stranger for the same account waits too; for another account it may go.
        assert_eq!(
            gate.admit("203.0.113.2", "admin").err(),
            Some(Refused::AccountBusy)
        );
        let second = gate.admit("203.0.113.2", "viewer").unwrap();
        // The open places are full: strangers are turned away, a known sender still gets in,
        // for the account under attack too, and only once at a time.
        assert_eq!(
            gate.admit("203.0.113.3", "editor").err(),
            Some(Refused::Full)
        );
        let known = gate.admit("198.51.100.7", "admin").unwrap();
        assert!(known.known());
        assert_eq!(
            gate.admit("198.51.100.7", "admin").err(),
            Some(Refused::SenderBusy)
        );
        // Leaving frees the place, the sender and the account.
        drop(first);
        assert!(gate.admit("203.0.113.1", "admin").is_ok());
        drop((second, known));
        let again: Vec<_> = ["203.0.113.5", "203.0.113.6"]
            .iter()
            .zip(["a", "b"])
            .map(|(sender, account)| gate.admit(sender, account).unwrap())
            .collect();
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn the_remembered_senders_are_bounded_and_the_oldest_forgotten_first() {
        let gate = gate(1);
        let start = Instant::now();
        for n in 0..=REMEMBERED_SENDERS {
            let at = start + std::time::Duration::from_millis(n as u64);
            gate.remember(&format!("sender-{n}"), at);
        }
        let taken = gate.taken();
        assert_eq!(taken.recent.len(), REMEMBERED_SENDERS);
        assert!(!taken.recent.contains_key("sender-0"));
        assert!(
            taken
                .recent
                .contains_key(&format!("sender-{REMEMBERED_SENDERS}"))
        );
    }
}
