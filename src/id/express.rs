//! express-session's signed cookie (`connect.sid=s%3A<sid>.<signature>`), read exactly as Node
//! reads it: the first duplicate wins (jshttp/cookie), values are percent-decoded (the raw text
//! kept when decoding fails), and the signature is cookie-signature's: base64 (standard
//! alphabet, no padding) of HMAC-SHA256 over the sid, compared in constant time, with every
//! secret tried in order.
//!
//! express-session ids are strings, not tower-sessions ids: a socket's session is keyed by an
//! [`Id`] derived from the sid (a hash), and the sid itself is kept for the store while a live
//! session uses it.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, header::COOKIE};
use sha2::{Digest, Sha256};
use tower_sessions::session::Id;

use crate::error::InvalidReason;

type HmacSha256 = Hmac<Sha256>;

/// The secrets of an express-session app, as its `secret` option: the first signs, any
/// verifies (secret rotation).
#[derive(Clone)]
pub struct ExpressSecrets(Arc<[Vec<u8>]>);

impl ExpressSecrets {
    /// The app's secrets, newest first. Returns `None` when the list is empty.
    ///
    /// # Examples
    /// ```
    /// let secrets = socketio_sessions::ExpressSecrets::new(["new secret", "old secret"]).unwrap();
    /// ```
    pub fn new<I, S>(secrets: I) -> Option<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let list: Vec<Vec<u8>> = secrets.into_iter().map(|s| s.as_ref().to_vec()).collect();
        (!list.is_empty()).then(|| ExpressSecrets(list.into()))
    }

    /// Signs `sid` with the first secret, as express-session does: `s:<sid>.<signature>`
    /// (not yet URL-encoded).
    pub fn sign(&self, sid: &str) -> String {
        format!("s:{sid}.{}", signature(&self.0[0], sid))
    }

    /// The sid inside a cookie value (`s:<sid>.<signature>`, already percent-decoded), if a
    /// secret signed it; `None` for unsigned values and forgeries.
    pub fn unsign<'a>(&self, value: &'a str) -> Option<&'a str> {
        let signed = value.strip_prefix("s:")?;
        let (sid, sig) = signed.rsplit_once('.')?;
        self.0
            .iter()
            .any(|secret| constant_time_eq(signature(secret, sid).as_bytes(), sig.as_bytes()))
            .then_some(sid)
    }
}

impl fmt::Debug for ExpressSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExpressSecrets({} secrets)", self.0.len())
    }
}

fn signature(secret: &[u8], sid: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(sid.as_bytes());
    STANDARD_NO_PAD.encode(mac.finalize().into_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `decodeURIComponent`, or the raw text when it fails (as jshttp/cookie does).
fn decode(raw: &str) -> String {
    if !raw.contains('%') {
        return raw.to_owned();
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return raw.to_owned(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
}

/// The first cookie named `name` across all `Cookie` headers, decoded as jshttp/cookie does.
pub(crate) fn first_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    for header in headers.get_all(COOKIE) {
        let Ok(header) = std::str::from_utf8(header.as_bytes()) else {
            continue;
        };
        for pair in header.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim() != name {
                continue;
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            return Some(decode(v));
        }
    }
    None
}

/// The id a socket's session is keyed by for an express-session sid.
pub(crate) fn derive_id(sid: &str) -> Id {
    let digest = Sha256::new()
        .chain_update(b"socketio-sessions/express\0")
        .chain_update(sid.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Id(i128::from_le_bytes(bytes))
}

/// Reads the express-session cookie: `Missing` without one, `Malformed` when it is not signed
/// by one of the secrets (such a cookie never reaches the store).
pub(crate) fn sid_from_headers(
    headers: &HeaderMap,
    name: &str,
    secrets: &ExpressSecrets,
    max_bytes: usize,
) -> Result<String, InvalidReason> {
    let value = first_cookie(headers, name).ok_or(InvalidReason::Missing)?;
    // The app's other cookies do not count: only this value must be small.
    if value.len() > max_bytes {
        return Err(InvalidReason::Malformed);
    }
    secrets
        .unsign(&value)
        .map(str::to_owned)
        .ok_or(InvalidReason::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_signature_vector() {
        let s = ExpressSecrets::new(["tobiiscool"]).unwrap();
        assert_eq!(
            signature(b"tobiiscool", "hello"),
            "DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"
        );
        assert_eq!(
            s.sign("hello"),
            "s:hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"
        );
        assert_eq!(s.unsign(&s.sign("hello")), Some("hello"));
    }

    #[test]
    fn forgeries_fail() {
        let s = ExpressSecrets::new(["tobiiscool"]).unwrap();
        let val = s.sign("hello");
        let body = val.strip_prefix("s:").unwrap();
        let forged = [
            format!("garbage{val}"),
            format!("s:garbage.{body}"),
            format!("{val}.garbage"),
            format!("{val}garbage"),
            format!("{val}="),
            val[..val.len() - 1].to_owned(),
            val.replace('+', "-"),
            val.to_uppercase(),
            body.to_owned(),
            format!("s:other.{}", body.split_once('.').unwrap().1),
            ExpressSecrets::new(["wrong"]).unwrap().sign("hello"),
            String::new(),
            "s:".into(),
        ];
        for f in forged {
            assert_eq!(s.unsign(&f), None, "{f}");
        }
    }

    #[test]
    fn rotation_accepts_old_and_signs_with_new() {
        let old = ExpressSecrets::new(["old"]).unwrap();
        let both = ExpressSecrets::new(["new", "old"]).unwrap();
        assert_eq!(both.unsign(&old.sign("abc")), Some("abc"));
        assert_eq!(old.unsign(&both.sign("abc")), None);
        assert_eq!(
            ExpressSecrets::new(["new"])
                .unwrap()
                .unsign(&both.sign("abc")),
            Some("abc")
        );
    }

    #[test]
    fn node_cookie_parsing() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            "a=1; connect.sid=s%3Afirst.sig; connect.sid=second"
                .parse()
                .unwrap(),
        );
        h.append(COOKIE, "connect.sid=third".parse().unwrap());
        assert_eq!(
            first_cookie(&h, "connect.sid").as_deref(),
            Some("s:first.sig")
        );
        let mut h = HeaderMap::new();
        h.append(COOKIE, "x=1".parse().unwrap());
        h.append(COOKIE, "connect.sid=\"quoted\"".parse().unwrap());
        assert_eq!(first_cookie(&h, "connect.sid").as_deref(), Some("quoted"));
        assert_eq!(decode("%E0%A4%A"), "%E0%A4%A");
        assert_eq!(decode("s%3Aabc"), "s:abc");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn derived_ids_are_stable() {
        assert_eq!(derive_id("abc"), derive_id("abc"));
        assert_ne!(derive_id("abc"), derive_id("abd"));
    }
}
