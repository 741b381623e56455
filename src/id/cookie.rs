//! The session cookie in the three formats tower-sessions writes: plain, signed and private.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use http::{HeaderMap, header::COOKIE};
use tower_sessions::cookie::{Cookie, CookieJar, Key};
use tower_sessions::session::Id;

use crate::error::InvalidReason;

/// How the session cookie's value is protected. It must match the app's
/// `SessionManagerLayer`: [`Plain`](CookieKey::Plain) for `SessionManagerLayer::new`,
/// [`Signed`](CookieKey::Signed) for `with_signed(key)`, [`Private`](CookieKey::Private) for
/// `with_private(key)`, with the same key.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum CookieKey {
    /// The cookie holds the bare session id.
    #[default]
    Plain,
    /// The cookie is signed with HMAC-SHA256 under this key.
    Signed(Key),
    /// The cookie is encrypted with AES-256-GCM under this key.
    Private(Key),
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str(match self {
            CookieKey::Plain => "Plain",
            CookieKey::Signed(_) => "Signed(..)",
            CookieKey::Private(_) => "Private(..)",
        })
    }
}

/// The session cookie's name, protection and size limit.
#[derive(Debug, Clone)]
pub(crate) struct CookieConfig {
    pub(crate) name: Cow<'static, str>,
    pub(crate) key: CookieKey,
    /// The largest total size of `Cookie` headers that is parsed at all.
    pub(crate) max_header_bytes: usize,
}

impl CookieConfig {
    /// Finds the session id in the request's `Cookie` headers, exactly as tower-cookies (and so
    /// tower-sessions) reads them: `;`-separated, percent-decoded, the last duplicate wins.
    pub(crate) fn id_from_headers(&self, headers: &HeaderMap) -> Result<Id, InvalidReason> {
        let total: usize = headers.get_all(COOKIE).iter().map(|v| v.len()).sum();
        if total > self.max_header_bytes {
            return Err(InvalidReason::Malformed);
        }
        let mut jar = CookieJar::new();
        for header in headers.get_all(COOKIE) {
            let Ok(header) = std::str::from_utf8(header.as_bytes()) else {
                continue;
            };
            for part in header.split(';') {
                if let Ok(cookie) = Cookie::parse_encoded(part.to_owned())
                    && cookie.name() == self.name
                {
                    jar.add_original(cookie);
                }
            }
        }
        if jar.get(&self.name).is_none() {
            return Err(InvalidReason::Missing);
        }
        self.decode(&jar)
    }

    /// Decodes a cookie value handed over some other way (the `auth` payload).
    pub(crate) fn id_from_value(&self, value: &str) -> Result<Id, InvalidReason> {
        if value.len() > self.max_header_bytes {
            return Err(InvalidReason::Malformed);
        }
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(
            self.name.clone().into_owned(),
            value.to_owned(),
        ));
        self.decode(&jar)
    }

    fn decode(&self, jar: &CookieJar) -> Result<Id, InvalidReason> {
        let cookie = match &self.key {
            CookieKey::Plain => jar.get(&self.name).cloned(),
            CookieKey::Signed(key) => jar.signed(key).get(&self.name),
            CookieKey::Private(key) => jar.private(key).get(&self.name),
        };
        let cookie = cookie.ok_or(InvalidReason::Malformed)?;
        Id::from_str(cookie.value()).map_err(|_| InvalidReason::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(key: CookieKey) -> CookieConfig {
        CookieConfig {
            name: "id".into(),
            key,
            max_header_bytes: 8192,
        }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn plain_cookie() {
        let id = Id::default();
        let c = config(CookieKey::Plain);
        let h = headers(&[&format!("a=1; id={id}; b=2")]);
        assert_eq!(c.id_from_headers(&h), Ok(id));
        assert_eq!(
            c.id_from_headers(&headers(&["a=1"])),
            Err(InvalidReason::Missing)
        );
        assert_eq!(
            c.id_from_headers(&HeaderMap::new()),
            Err(InvalidReason::Missing)
        );
        assert_eq!(
            c.id_from_headers(&headers(&["id=not-an-id"])),
            Err(InvalidReason::Malformed)
        );
        assert_eq!(
            c.id_from_headers(&headers(&["id="])),
            Err(InvalidReason::Malformed)
        );
    }

    #[test]
    fn duplicates_and_split_headers_follow_tower_cookies() {
        let (a, b) = (Id::default(), Id::default());
        let c = config(CookieKey::Plain);
        assert_eq!(
            c.id_from_headers(&headers(&[&format!("id={a}; id={b}")])),
            Ok(b)
        );
        assert_eq!(
            c.id_from_headers(&headers(&[&format!("id={a}"), "x=1"])),
            Ok(a)
        );
    }

    #[test]
    fn signed_cookie_round_trip_and_forgery() {
        let key = Key::generate();
        let id = Id::default();
        let mut jar = CookieJar::new();
        jar.signed_mut(&key).add(Cookie::new("id", id.to_string()));
        let value = jar.delta().next().unwrap().value().to_owned();
        let c = config(CookieKey::Signed(key));
        assert_eq!(
            c.id_from_headers(&headers(&[&format!("id={value}")])),
            Ok(id)
        );
        assert_eq!(c.id_from_value(&value), Ok(id));
        // The bare id, or a signature under another key, is refused.
        assert_eq!(
            c.id_from_headers(&headers(&[&format!("id={id}")])),
            Err(InvalidReason::Malformed)
        );
        let other = config(CookieKey::Signed(Key::generate()));
        assert_eq!(other.id_from_value(&value), Err(InvalidReason::Malformed));
        let mut tampered = value.clone();
        tampered.pop();
        tampered.push(if value.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(c.id_from_value(&tampered), Err(InvalidReason::Malformed));
    }

    #[test]
    fn private_cookie_round_trip() {
        let key = Key::generate();
        let id = Id::default();
        let mut jar = CookieJar::new();
        jar.private_mut(&key).add(Cookie::new("id", id.to_string()));
        let value = jar.delta().next().unwrap().value().to_owned();
        let c = config(CookieKey::Private(key));
        assert_eq!(c.id_from_value(&value), Ok(id));
        assert_eq!(
            config(CookieKey::Private(Key::generate())).id_from_value(&value),
            Err(InvalidReason::Malformed)
        );
    }

    #[test]
    fn oversized_header_is_refused_before_parsing() {
        let c = config(CookieKey::Plain);
        let big = format!("id={}; pad={}", Id::default(), "x".repeat(9000));
        assert_eq!(
            c.id_from_headers(&headers(&[&big])),
            Err(InvalidReason::Malformed)
        );
    }
}
