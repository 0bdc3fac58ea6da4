//! Versioned state blobs for `save_state` / `restore_state`.
//!
//! A blob is `BMSS` + a `u16` little-endian format version + JSON. The
//! version lets a newer plugin read (or clearly refuse) an older layout.
//! JSON has no NaN: a non-finite float saves as `null` and then fails to
//! decode, so keep state finite (or use `Option<f32>`).

use serde::{de::DeserializeOwned, Serialize};

const MAGIC: &[u8; 4] = b"BMSS";

/// Encode `state` with a format `version`.
pub fn encode<T: Serialize>(version: u16, state: &T) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    // Serializing plain data structs to JSON cannot fail.
    out.extend_from_slice(&serde_json::to_vec(state).unwrap_or_default());
    out
}

/// Split a blob into its format version and JSON body.
pub fn version_of(blob: &[u8]) -> Result<(u16, &[u8]), String> {
    if blob.len() < 6 || &blob[..4] != MAGIC {
        return Err(
            "state blob has no BMSS header; it was not written by a bms-plugin-sdk plugin".into(),
        );
    }
    Ok((u16::from_le_bytes([blob[4], blob[5]]), &blob[6..]))
}

/// Decode a blob written by [`encode`] with exactly `version`.
pub fn decode<T: DeserializeOwned>(version: u16, blob: &[u8]) -> Result<T, String> {
    let (found, body) = version_of(blob)?;
    if found != version {
        return Err(format!(
            "state format version {found} is not supported (this plugin reads version {version})"
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("state blob is corrupt: {e}"))
}
