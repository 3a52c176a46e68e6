//! Sign-in codes (RFC 6238 TOTP: six digits, 30-second steps, SHA-1, as every authenticator
//! app reads them): the one rule of which code is accepted, for the panel and its tests.

use totp_rs::{Builder, Secret, Totp};

/// A new secret for an authenticator app: 20 random bytes in base32 (what apps type in).
pub fn new_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 20] = rand::rng().random();
    Secret::from(bytes).to_base32()
}

fn totp(secret: &str) -> Option<Totp> {
    let bytes = Secret::try_from_base32(secret).ok()?;
    Builder::new().with_secret(bytes).build().ok()
}

/// Whether `secret` is one [`new_secret`] could have made (so it can be checked).
pub fn is_secret(secret: &str) -> bool {
    totp(secret).is_some()
}

/// The time step `code` proves for `secret` at `now` (Unix seconds), one step either side
/// allowed for clocks that differ; `None` for a wrong code, and for a code of a step at or
/// before `used` (each code works once: one seen over someone's shoulder is spent).
pub fn accepted_step(secret: &str, code: &str, used: Option<i64>, now: u64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let step = i64::try_from(totp(secret)?.check(&code, now)?).ok()?;
    used.is_none_or(|used| step > used).then_some(step)
}

/// The code for `secret` at `now`, as an app shows it (for tests and the demo).
pub fn code_at(secret: &str, now: u64) -> Option<String> {
    Some(totp(secret)?.generate(now).to_string())
}

/// The address an authenticator app reads (by QR code or link) to add `user`'s secret.
pub fn app_address(secret: &str, user: &str) -> String {
    let label: String = user
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c.to_string(),
            other => format!("%{:02X}", other as u32),
        })
        .collect();
    format!("otpauth://totp/clubdeploy:{label}?secret={secret}&issuer=clubdeploy")
}

/// Seconds since the Unix epoch now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_in_its_step_and_the_next_once_and_never_again() {
        let secret = new_secret();
        assert!(is_secret(&secret));
        assert_eq!(secret.len(), 32, "{secret}");
        let t = 1_800_000_000;
        let code = code_at(&secret, t).unwrap();
        assert_eq!(code.len(), 6);
        let step = accepted_step(&secret, &code, None, t).unwrap();
        assert_eq!(step, (t / 30) as i64);
        // Typed with a space, or read 30 s late: still that step.
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(accepted_step(&secret, &spaced, None, t + 30), Some(step));
        // Used once: spent; a later code still works.
        assert_eq!(accepted_step(&secret, &code, Some(step), t), None);
        let next = code_at(&secret, t + 30).unwrap();
        assert_eq!(
            accepted_step(&secret, &next, Some(step), t + 30),
            Some(step + 1)
        );
        // Too late, wrong, or for another secret: refused.
        assert_eq!(accepted_step(&secret, &code, None, t + 90), None);
        assert_eq!(accepted_step(&secret, "000000x", None, t), None);
        assert_eq!(accepted_step(&new_secret(), &code, None, t), None);
        assert!(!is_secret("not base32!"));
        assert_eq!(
            app_address("ABC", "maria@club"),
            "otpauth://totp/clubdeploy:maria%40club?secret=ABC&issuer=clubdeploy"
        );
    }
}
