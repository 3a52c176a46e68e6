//! argon2id password hashes with at least OWASP's minimum cost (19 MiB, t=2, p=1).

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::domain::NewPassword;

fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A password hash ready to store (a PHC string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Hashes a new password (a random salt each time). Slow on purpose: call it off the async
/// threads, holding no database connection.
pub fn hash(password: &NewPassword) -> anyhow::Result<PasswordHash> {
    hasher()
        .hash_password(password.expose().as_bytes())
        .map(|h| PasswordHash(h.to_string()))
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Whether `password` matches `stored` (a PHC string from [`hash`]).
pub fn verify(password: &str, stored: &str) -> bool {
    hasher()
        .verify_password(password.as_bytes(), stored)
        .is_ok()
}

/// Bounds how many password checks run at once (one per core) and how many may wait for one;
/// past that a sign-in is turned away at once (503) instead of queuing behind a flood.
pub struct HashGate {
    running: std::sync::Arc<tokio::sync::Semaphore>,
    admitted: std::sync::atomic::AtomicUsize,
    max_admitted: usize,
}

/// A place in the gate's queue; leaving it (drop) frees the place.
pub struct Admitted<'a> {
    gate: &'a HashGate,
}

impl HashGate {
    /// One check per core at a time, and as many again waiting.
    pub fn new() -> HashGate {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        HashGate {
            running: std::sync::Arc::new(tokio::sync::Semaphore::new(cores)),
            admitted: std::sync::atomic::AtomicUsize::new(0),
            max_admitted: 2 * cores,
        }
    }

    /// A place in the queue, or `None` when it is full.
    pub fn admit(&self) -> Option<Admitted<'_>> {
        use std::sync::atomic::Ordering;
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        if before >= self.max_admitted {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Admitted { gate: self })
    }
}

impl Default for HashGate {
    fn default() -> Self {
        HashGate::new()
    }
}

impl Admitted<'_> {
    /// Checks `password` against `stored` when a core is free, off the async threads.
    pub async fn verify(&self, password: String, stored: String) -> bool {
        let Ok(_running) = self.gate.running.clone().acquire_owned().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || verify(&password, &stored))
            .await
            .unwrap_or(false)
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.gate
            .admitted
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let password = NewPassword::parse("correct horse battery").unwrap();
        let stored = hash(&password).unwrap().0;
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse battery!", &stored));
        assert_ne!(stored, hash(&password).unwrap().0, "salts differ");
    }
}
