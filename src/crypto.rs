//! The console's secret key and the sealing of secrets (Mailchimp tokens, API keys) at rest.

use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Marks the format of sealed values so that it can change later.
const SEALED_PREFIX: &str = "v1.";

/// 32 random bytes. Debug never shows them.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(redacted)")
    }
}

impl SecretKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Accepts 64 hex digits or standard base64 of 32 bytes.
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let raw = raw.trim();
        let bytes = if raw.len() == KEY_LEN * 2 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_LEN)
                .map(|i| u8::from_str_radix(&raw[i * 2..i * 2 + 2], 16))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            STANDARD
                .decode(raw)
                .context("the key must be 64 hex digits or base64")?
        };
        let bytes: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the key must be exactly 32 bytes"))?;
        Ok(Self(bytes))
    }

    /// Reads the key kept at `path`, or generates one there readable by the owner only.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the secret key {}", path.display()))?;
            return Self::parse(&text).with_context(|| format!("secret key {}", path.display()));
        }
        let key = Self::generate();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .with_context(|| format!("creating the secret key {}", path.display()))?;
        writeln!(file, "{}", STANDARD.encode(key.0))?;
        tracing::info!("generated a new secret key in {}", path.display());
        Ok(key)
    }

    /// Encrypts `plain` with a fresh random nonce; the result is printable text.
    pub fn seal(&self, plain: &str) -> String {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, plain.as_bytes())
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Decrypts what [`SecretKey::seal`] produced with this key.
    pub fn open(&self, sealed: &str) -> anyhow::Result<String> {
        let Some(body) = sealed.strip_prefix(SEALED_PREFIX) else {
            bail!("unknown sealed-secret format");
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .context("sealed secret is not base64")?;
        if bytes.len() < NONCE_LEN {
            bail!("sealed secret is too short");
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let plain = cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| anyhow::anyhow!("sealed secret does not open with this key"))?;
        Ok(String::from_utf8(plain)?)
    }
}

impl SecretKey {
    /// A keyed digest of `data` for one `purpose` (HMAC-SHA256, hex): a value the console
    /// can recompute and nobody without the key can forge.
    pub fn mac(&self, purpose: &str, data: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A random token for URLs and forms (CSRF tokens, OAuth state).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let key = SecretKey::generate();
        let sealed = key.seal("token-123");
        assert!(!sealed.contains("token-123"));
        assert_eq!(key.open(&sealed).unwrap(), "token-123");
        assert!(SecretKey::generate().open(&sealed).is_err());
    }

    #[test]
    fn sealing_twice_gives_different_text() {
        let key = SecretKey::generate();
        assert_ne!(key.seal("same"), key.seal("same"));
    }

    #[test]
    fn keys_parse_from_hex_and_base64_and_refuse_wrong_lengths() {
        let hex = "00".repeat(32);
        assert!(SecretKey::parse(&hex).is_ok());
        assert!(SecretKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(SecretKey::parse(&STANDARD.encode([7u8; 16])).is_err());
        assert!(SecretKey::parse("not a key").is_err());
    }

    #[test]
    fn a_generated_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let first = SecretKey::load_or_generate(&path).unwrap();
        let second = SecretKey::load_or_generate(&path).unwrap();
        assert_eq!(first.0, second.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert_eq!(
            format!("{:?}", SecretKey::generate()),
            "SecretKey(redacted)"
        );
    }
}
