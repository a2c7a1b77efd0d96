//! Key material as an operator writes it on a command line, checked strictly: the SSH
//! server's authorized keys (the base64 field of an `authorized_keys` line, which holds the
//! `ssh-ed25519` wire blob) and its host key (the 32-byte Ed25519 seed, as 64 hex digits).
//!
//! Only Ed25519: it is what the server offers (small, constant-time, no parameters to get
//! wrong). An RSA or ECDSA key is refused with its type named, not skipped in silence.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not base64 (the offending byte's position).
    Base64(usize),
    /// Not an SSH public-key blob (truncated, trailing bytes, bad lengths).
    Malformed,
    /// A public key of a type this server does not take (its name, cut to 40 bytes).
    Unsupported(String),
    /// A seed that is not 64 hex digits.
    Seed,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Base64(at) => write!(f, "not base64 (at character {at})"),
            KeyError::Malformed => f.write_str("not an SSH public key (bad blob)"),
            KeyError::Unsupported(t) => write!(f, "a {t} key: only ssh-ed25519 keys are taken"),
            KeyError::Seed => f.write_str("a host key is 64 hex digits (an Ed25519 seed)"),
        }
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decodes standard base64 (`=` padding optional); at most `max` output bytes.
pub fn base64_decode(s: &str, max: usize) -> Result<Vec<u8>, KeyError> {
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 || body.len() % 4 == 1 {
        return Err(KeyError::Base64(body.len()));
    }
    let mut out = Vec::with_capacity((body.len() * 3 / 4).min(max));
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, c) in body.bytes().enumerate() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or(KeyError::Base64(i))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if out.len() == max {
                return Err(KeyError::Malformed);
            }
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Encodes `bytes` as base64 without padding (as OpenSSH prints fingerprints).
pub fn base64_encode_unpadded(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..=n {
            out.push(ALPHABET[(v >> (18 - 6 * k)) as usize & 63] as char);
        }
    }
    out
}

/// Splits one SSH `string` (u32 length, bytes) off the front of `b`.
fn ssh_string<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], KeyError> {
    let (len, rest) = b.split_first_chunk::<4>().ok_or(KeyError::Malformed)?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > rest.len() {
        return Err(KeyError::Malformed);
    }
    let (s, rest) = rest.split_at(len);
    *b = rest;
    Ok(s)
}

/// An authorized key: the base64 field of an `authorized_keys` line (`AAAAC3NzaC1lZDI1NTE5...`),
/// or the whole line `ssh-ed25519 AAAA... comment` with its words joined by nothing else than
/// what the command line allows (the caller splits). Returns the 32-byte Ed25519 public key.
pub fn parse_authorized(b64: &str) -> Result<[u8; 32], KeyError> {
    // The longest blob taken: an ssh-ed25519 one is 51 bytes; leave room to name others.
    let blob = base64_decode(b64, 1024)?;
    let mut rest = blob.as_slice();
    let ty = ssh_string(&mut rest)?;
    if ty != b"ssh-ed25519" {
        let name =
            core::str::from_utf8(&ty[..ty.len().min(40)]).map_err(|_| KeyError::Malformed)?;
        return Err(KeyError::Unsupported(String::from(name)));
    }
    let key = ssh_string(&mut rest)?;
    if !rest.is_empty() {
        return Err(KeyError::Malformed);
    }
    key.try_into().map_err(|_| KeyError::Malformed)
}

/// The wire blob of an Ed25519 public key (what fingerprints hash).
pub fn ed25519_blob(key: &[u8; 32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(51);
    b.extend_from_slice(&11u32.to_be_bytes());
    b.extend_from_slice(b"ssh-ed25519");
    b.extend_from_slice(&32u32.to_be_bytes());
    b.extend_from_slice(key);
    b
}

/// A host key seed: exactly 64 hex digits.
pub fn parse_seed_hex(s: &str) -> Result<[u8; 32], KeyError> {
    if s.len() != 64 {
        return Err(KeyError::Seed);
    }
    let mut seed = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hex = |c: u8| (c as char).to_digit(16).ok_or(KeyError::Seed);
        seed[i] = (hex(pair[0])? << 4 | hex(pair[1])?) as u8;
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -t ed25519` output's base64 field (a key made for this test).
    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIL+GKY8z6watc/FAtaHY475m+s1jzWAGUlmDrmKwRvfG";

    #[test]
    fn an_ed25519_key_parses_and_round_trips_through_its_blob() {
        let k = parse_authorized(KEY).unwrap();
        assert_eq!(k[0], 0xbf);
        assert_eq!(k[31], 0xc6);
        assert_eq!(base64_encode_unpadded(&ed25519_blob(&k)), KEY);
    }

    #[test]
    fn other_key_types_are_named_in_the_refusal() {
        // The first bytes of an `ssh-rsa` blob.
        let rsa = "AAAAB3NzaC1yc2EAAAADAQABAAABAQ";
        // Truncated after the type: it is still named before the body is looked at.
        assert_eq!(
            parse_authorized(rsa),
            Err(KeyError::Unsupported(String::from("ssh-rsa")))
        );
    }

    #[test]
    fn damaged_keys_are_refused() {
        assert_eq!(parse_authorized(""), Err(KeyError::Malformed));
        assert_eq!(parse_authorized("AAAA*A"), Err(KeyError::Base64(4)));
        assert_eq!(parse_authorized(&KEY[..40]), Err(KeyError::Malformed));
        // A trailing byte after the key.
        let mut blob = ed25519_blob(&[7; 32]);
        blob.push(0);
        let long = base64_encode_unpadded(&blob);
        assert_eq!(parse_authorized(&long), Err(KeyError::Malformed));
        // A length field that points past the end.
        let mut blob = ed25519_blob(&[7; 32]);
        blob[0] = 0xff;
        assert_eq!(
            parse_authorized(&base64_encode_unpadded(&blob)),
            Err(KeyError::Malformed)
        );
        assert_eq!(parse_authorized("A==="), Err(KeyError::Base64(1)));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode_unpadded(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc, 64).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64_decode("Zg==", 64).unwrap(), b"f");
        assert_eq!(base64_decode("Zm9vYmFy", 3), Err(KeyError::Malformed));
    }

    #[test]
    fn seeds_are_exactly_64_hex_digits() {
        let s = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let seed = parse_seed_hex(s).unwrap();
        assert_eq!(seed[1], 0x11);
        assert_eq!(seed[31], 0xff);
        assert_eq!(parse_seed_hex(&s[..62]), Err(KeyError::Seed));
        assert_eq!(parse_seed_hex(&s.replace('a', "g")), Err(KeyError::Seed));
        assert_eq!(
            parse_seed_hex(&alloc::format!("{}+", &s[..63])),
            Err(KeyError::Seed)
        );
    }
}
