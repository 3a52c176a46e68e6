//! Random tokens, their hashes, and comparing secrets: what sessions, CSRF forms, the health
//! probe's key and the demo's password are made of.

use sha2::{Digest, Sha256};

/// A fresh random token: 32 bytes as 64 hex digits.
pub fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    hex(&bytes)
}

/// SHA-256 of `text` as hex: what is stored of a session token.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
