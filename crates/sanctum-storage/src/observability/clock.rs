//! The injectable clock: timestamps of versions and the age of orphans come from here, so tests
//! can move time.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A fresh time-ordered id (a lower-case ULID) stamped with `clock`'s time. Its 80 random bits
/// come straight from the OS ([`fresh_ulid`]).
pub(crate) fn new_id(clock: &dyn Clock) -> String {
    ulid::Ulid::from_parts(clock.now_ms(), fresh_ulid().random())
        .to_string()
        .to_ascii_lowercase()
}

/// A ULID whose random bits come straight from the OS (one `getrandom` call), so that a forked
/// process or a cloned VM never repeats its parent's ids (a thread RNG is not reseeded on
/// fork). If the OS source fails, ulid's own generator is the fallback.
pub(crate) fn fresh_ulid() -> ulid::Ulid {
    let mut random = [0u8; 10];
    match sanctum_crypto::fill_random(&mut random) {
        Ok(()) => {
            let mut bits = [0u8; 16];
            bits[6..].copy_from_slice(&random);
            ulid::Ulid::from_parts(SystemClock.now_ms(), u128::from_be_bytes(bits))
        }
        Err(_) => ulid::Ulid::new(),
    }
}

/// The timestamp of an id made by [`new_id`], if it is one.
pub(crate) fn id_time_ms(id: &str) -> Option<u64> {
    is_id(id)
        .then(|| ulid::Ulid::from_string(id).ok().map(|u| u.timestamp_ms()))
        .flatten()
}

/// Whether `id` has the shape of an id made by [`new_id`].
pub(crate) fn is_id(id: &str) -> bool {
    id.len() == 26
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        && ulid::Ulid::from_string(id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(u64);
    impl Clock for Fixed {
        fn now_ms(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn ids_carry_the_clock_time_and_differ() {
        let a = new_id(&Fixed(1_700_000_000_000));
        let b = new_id(&Fixed(1_700_000_000_000));
        assert_ne!(a, b);
        assert!(is_id(&a));
        assert_eq!(id_time_ms(&a), Some(1_700_000_000_000));
        assert!(!is_id("../../etc"));
        assert!(!is_id(&a.to_ascii_uppercase()));
    }
}
