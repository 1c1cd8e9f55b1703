//! Identifiers that come from outside and reach the file system.
//!
//! A call id comes from the WHIP URL and names a directory; a participant id
//! comes from the client's SDP (`a=msid`) and names a file. Neither may ever
//! climb out of the data directory or collide with another.

use std::fmt;
use std::sync::Arc;

/// Longest call id or file stem we accept or produce.
pub const MAX_ID_LEN: usize = 128;

/// A validated call id: 1-128 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(Arc<str>);

/// Why a call id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallIdError {
    /// Empty.
    #[error("call id is empty")]
    Empty,
    /// Longer than [`MAX_ID_LEN`].
    #[error("call id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// Contains a character outside `[A-Za-z0-9._-]`.
    #[error("call id may only contain A-Z, a-z, 0-9, '.', '_' and '-'")]
    BadCharacter,
    /// Is `.` or `..`.
    #[error("call id may not be '.' or '..'")]
    DotName,
}

fn is_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl CallId {
    /// Validates `text` as a call id.
    pub fn parse(text: &str) -> Result<Self, CallIdError> {
        if text.is_empty() {
            return Err(CallIdError::Empty);
        }
        if text.len() > MAX_ID_LEN {
            return Err(CallIdError::TooLong);
        }
        if !text.chars().all(is_safe_char) {
            return Err(CallIdError::BadCharacter);
        }
        if text == "." || text == ".." {
            return Err(CallIdError::DotName);
        }
        Ok(Self(text.into()))
    }

    /// The id as text (safe to use as one path component).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Maps a participant id (any text) to a file stem that is safe as one path
/// component: `[A-Za-z0-9._-]`, 1-128 characters, never `.`/`..`, never
/// starting with `.` (no hidden files).
///
/// An id that is already safe maps to itself, so the usual case (a browser's
/// msid) keeps a readable name. Any other id has its unsafe characters
/// replaced and a hash of the original appended, so two different ids never
/// share a file (`a/b` and `a_b` differ).
pub fn participant_file_stem(participant_id: &str) -> String {
    let already_safe = !participant_id.is_empty()
        && participant_id.len() <= MAX_ID_LEN
        && participant_id.chars().all(is_safe_char)
        && !participant_id.starts_with('.');
    if already_safe {
        return participant_id.to_owned();
    }
    let hash = format!("{:016x}", fnv1a64(participant_id.as_bytes()));
    // Dots go too, so no `..` (or hidden name) survives in a cleaned stem.
    let mut cleaned: String = participant_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let room = MAX_ID_LEN - hash.len() - 1;
    if cleaned.len() > room {
        // Characters are ASCII after cleaning, so any byte index is a boundary.
        cleaned.truncate(room);
    }
    if cleaned.is_empty() {
        hash
    } else {
        format!("{cleaned}-{hash}")
    }
}

/// FNV-1a, 64 bit: a stable hash (unlike `DefaultHasher`, whose output may
/// change between Rust releases) so file names do not depend on the build.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids() {
        assert!(CallId::parse("call-1").is_ok());
        assert!(CallId::parse("A.b_c-9").is_ok());
        assert!(CallId::parse(&"x".repeat(128)).is_ok());
        assert_eq!(CallId::parse(""), Err(CallIdError::Empty));
        assert_eq!(CallId::parse(&"x".repeat(129)), Err(CallIdError::TooLong));
        assert_eq!(CallId::parse("."), Err(CallIdError::DotName));
        assert_eq!(CallId::parse(".."), Err(CallIdError::DotName));
        for bad in ["../etc", "a/b", "a\\b", "a b", "é", "a%2F", "a\0b", "a:b"] {
            assert_eq!(
                CallId::parse(bad),
                Err(CallIdError::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn participant_stems_are_safe_and_distinct() {
        assert_eq!(participant_file_stem("alice"), "alice");
        assert_eq!(participant_file_stem("s1a2b3c4-0"), "s1a2b3c4-0");
        let hostile = [
            "..",
            ".",
            "../../etc/passwd",
            "/abs",
            "a/b",
            "a_b/",
            ".hidden",
            "",
            "{5f1c-ab}",
            "名前",
            "a\\..\\b",
        ];
        let mut seen = std::collections::HashSet::new();
        for id in hostile {
            let stem = participant_file_stem(id);
            assert!(
                !stem.is_empty() && stem.len() <= MAX_ID_LEN,
                "{id:?} -> {stem:?}"
            );
            assert!(stem.chars().all(is_safe_char), "{id:?} -> {stem:?}");
            assert!(!stem.starts_with('.'), "{id:?} -> {stem:?}");
            assert!(seen.insert(stem.clone()), "collision for {id:?}");
        }
        assert_ne!(participant_file_stem("a/b"), participant_file_stem("a_b"));
        let long = participant_file_stem(&"/".repeat(1000));
        assert!(long.len() <= MAX_ID_LEN);
    }

    proptest::proptest! {
        #[test]
        fn any_participant_id_maps_to_one_safe_component(id in ".{0,300}") {
            let stem = participant_file_stem(&id);
            proptest::prop_assert!(!stem.is_empty() && stem.len() <= MAX_ID_LEN);
            proptest::prop_assert!(stem.chars().all(is_safe_char));
            proptest::prop_assert!(stem != "." && stem != ".." && !stem.starts_with('.'));
        }
    }
}
