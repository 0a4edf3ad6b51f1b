//! The one digest warden records and compares: hex SHA-256.

use sha2::{Digest, Sha256};

/// Hex SHA-256 of a text.
pub fn digest(text: &str) -> String {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
