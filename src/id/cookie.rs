//! The session cookie in the three formats tower-sessions writes: plain, signed and private.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderMap, header::COOKIE};
use tower_sessions::cookie::{Cookie, CookieJar, Key};
use tower_sessions::session::Id;

use super::express::{self, ExpressSecrets};
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
    /// An express-session cookie (`s:<sid>.<signature>`) signed with one of these secrets.
    Express(ExpressSecrets),
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str(match self {
            CookieKey::Plain => "Plain",
            CookieKey::Signed(_) => "Signed(..)",
            CookieKey::Private(_) => "Private(..)",
            CookieKey::Express(_) => "Express(..)",
        })
    }
}

/// Which session a socket asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionKey {
    /// The id sessions are keyed by on this node.
    pub(crate) id: Id,
    /// The store's own key where it is not a tower-sessions id (an express-session sid).
    pub(crate) external: Option<Arc<str>>,
    /// The value's signature or encryption verified (signed, private and express cookies):
    /// the app issued it, so it is not a guess, whatever the store says about it.
    pub(crate) verified: bool,
}

impl SessionKey {
    pub(crate) fn tower(id: Id, verified: bool) -> Self {
        SessionKey {
            id,
            external: None,
            verified,
        }
    }

    fn express(sid: String) -> Self {
        SessionKey {
            id: express::derive_id(&sid),
            external: Some(sid.into()),
            verified: true,
        }
    }

    #[cfg(test)]
    pub(crate) fn for_tests(verified: bool) -> Self {
        Self::tower(Id::default(), verified)
    }
}

/// The last session cookie in a request's headers.
enum Found<'h> {
    /// Too large to parse.
    TooLarge,
    /// A plain cookie's value with nothing to percent-decode: read without building a cookie
    /// and a jar for it (a noticeable part of a handshake).
    Plain(&'h str),
    Parsed(Cookie<'static>),
}

/// The session cookie's name, protection and size limit.
#[derive(Debug, Clone)]
pub(crate) struct CookieConfig {
    pub(crate) name: Cow<'static, str>,
    pub(crate) key: CookieKey,
    /// The largest session cookie value (or `auth` sid) that is parsed at all. The app's
    /// other cookies do not count: a large cookie jar is the browser's business, and HTTP
    /// accepts it.
    pub(crate) max_header_bytes: usize,
}

impl CookieConfig {
    fn verified(&self) -> bool {
        !matches!(self.key, CookieKey::Plain)
    }

    /// Finds the session id in the request's `Cookie` headers, exactly as tower-cookies (and so
    /// tower-sessions) reads them: `;`-separated, percent-decoded, the last duplicate wins.
    /// Only the session cookie is parsed; a value over the size limit is `Malformed`.
    pub(crate) fn id_from_headers(&self, headers: &HeaderMap) -> Result<SessionKey, InvalidReason> {
        if let CookieKey::Express(secrets) = &self.key {
            let sid =
                express::sid_from_headers(headers, &self.name, secrets, self.max_header_bytes)?;
            return Ok(SessionKey::express(sid));
        }
        let mut found = None;
        for header in headers.get_all(COOKIE) {
            let Ok(header) = std::str::from_utf8(header.as_bytes()) else {
                continue;
            };
            for part in header.split(';') {
                let (raw_name, raw_value) = part.split_once('=').unwrap_or((part, ""));
                let raw_name = raw_name.trim();
                // Other cookies are skipped unparsed; an encoded name may decode to ours.
                if raw_name != self.name && !raw_name.contains('%') {
                    continue;
                }
                let raw_value = raw_value.trim();
                if raw_value.len() > self.max_header_bytes {
                    if raw_name == self.name {
                        found = Some(Found::TooLarge);
                    }
                    continue;
                }
                if raw_name == self.name
                    && matches!(self.key, CookieKey::Plain)
                    && !raw_value.contains('%')
                {
                    // What parsing would give: the trimmed value, nothing to decode.
                    found = Some(Found::Plain(raw_value));
                } else if let Ok(cookie) = Cookie::parse_encoded(part.to_owned())
                    && cookie.name() == self.name
                {
                    found = Some(Found::Parsed(cookie));
                }
            }
        }
        let cookie = match found {
            None => return Err(InvalidReason::Missing),
            Some(Found::TooLarge) => return Err(InvalidReason::Malformed),
            Some(Found::Plain(value)) => {
                let id = Id::from_str(value).map_err(|_| InvalidReason::Malformed)?;
                return Ok(SessionKey::tower(id, self.verified()));
            }
            Some(Found::Parsed(cookie)) => cookie,
        };
        let mut jar = CookieJar::new();
        jar.add_original(cookie);
        self.decode(&jar)
            .map(|id| SessionKey::tower(id, self.verified()))
    }

    /// Decodes a cookie value handed over some other way (the `auth` payload).
    pub(crate) fn id_from_value(&self, value: &str) -> Result<SessionKey, InvalidReason> {
        if value.len() > self.max_header_bytes {
            return Err(InvalidReason::Malformed);
        }
        if let CookieKey::Express(secrets) = &self.key {
            let sid = secrets.unsign(value).ok_or(InvalidReason::Malformed)?;
            return Ok(SessionKey::express(sid.to_owned()));
        }
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(
            self.name.clone().into_owned(),
            value.to_owned(),
        ));
        self.decode(&jar)
            .map(|id| SessionKey::tower(id, self.verified()))
    }

    fn decode(&self, jar: &CookieJar) -> Result<Id, InvalidReason> {
        let cookie = match &self.key {
            CookieKey::Plain => jar.get(&self.name).cloned(),
            CookieKey::Signed(key) => jar.signed(key).get(&self.name),
            CookieKey::Private(key) => jar.private(key).get(&self.name),
            CookieKey::Express(_) => unreachable!("express cookies are read by `express`"),
        };
        let cookie = cookie.ok_or(InvalidReason::Malformed)?;
        Id::from_str(cookie.value()).map_err(|_| InvalidReason::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl CookieConfig {
        fn hid(&self, h: &HeaderMap) -> Result<Id, InvalidReason> {
            self.id_from_headers(h).map(|k| k.id)
        }
        fn vid(&self, v: &str) -> Result<Id, InvalidReason> {
            self.id_from_value(v).map(|k| k.id)
        }
    }

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
        assert_eq!(c.hid(&h), Ok(id));
        assert_eq!(c.hid(&headers(&["a=1"])), Err(InvalidReason::Missing));
        assert_eq!(c.hid(&HeaderMap::new()), Err(InvalidReason::Missing));
        assert_eq!(
            c.hid(&headers(&["id=not-an-id"])),
            Err(InvalidReason::Malformed)
        );
        assert_eq!(c.hid(&headers(&["id="])), Err(InvalidReason::Malformed));
    }

    #[test]
    fn plain_values_read_without_parsing_match_the_parser() {
        let id = Id::default();
        let c = config(CookieKey::Plain);
        for value in [
            format!("{id}"),
            format!("  {id} "),
            format!("\"{id}\""),
            format!("{id}x"),
            String::new(),
        ] {
            let parsed = Cookie::parse_encoded(format!("id={value}")).unwrap();
            let want = Id::from_str(parsed.value()).map_err(|_| InvalidReason::Malformed);
            assert_eq!(
                c.hid(&headers(&[&format!("id={value}")])),
                want,
                "{value:?}"
            );
        }
        // Percent-encoded values still go through the parser.
        let encoded = id.to_string().replace('-', "%2D");
        assert_eq!(c.hid(&headers(&[&format!("id={encoded}")])), Ok(id));
    }

    #[test]
    fn duplicates_and_split_headers_follow_tower_cookies() {
        let (a, b) = (Id::default(), Id::default());
        let c = config(CookieKey::Plain);
        assert_eq!(c.hid(&headers(&[&format!("id={a}; id={b}")])), Ok(b));
        assert_eq!(c.hid(&headers(&[&format!("id={a}"), "x=1"])), Ok(a));
    }

    #[test]
    fn signed_cookie_round_trip_and_forgery() {
        let key = Key::generate();
        let id = Id::default();
        let mut jar = CookieJar::new();
        jar.signed_mut(&key).add(Cookie::new("id", id.to_string()));
        let value = jar.delta().next().unwrap().value().to_owned();
        let c = config(CookieKey::Signed(key));
        assert_eq!(c.hid(&headers(&[&format!("id={value}")])), Ok(id));
        assert_eq!(c.vid(&value), Ok(id));
        // The bare id, or a signature under another key, is refused.
        assert_eq!(
            c.hid(&headers(&[&format!("id={id}")])),
            Err(InvalidReason::Malformed)
        );
        let other = config(CookieKey::Signed(Key::generate()));
        assert_eq!(other.vid(&value), Err(InvalidReason::Malformed));
        let mut tampered = value.clone();
        tampered.pop();
        tampered.push(if value.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(c.vid(&tampered), Err(InvalidReason::Malformed));
    }

    #[test]
    fn private_cookie_round_trip() {
        let key = Key::generate();
        let id = Id::default();
        let mut jar = CookieJar::new();
        jar.private_mut(&key).add(Cookie::new("id", id.to_string()));
        let value = jar.delta().next().unwrap().value().to_owned();
        let c = config(CookieKey::Private(key));
        assert_eq!(c.vid(&value), Ok(id));
        assert_eq!(
            config(CookieKey::Private(Key::generate())).vid(&value),
            Err(InvalidReason::Malformed)
        );
    }

    #[test]
    fn the_cap_applies_to_the_session_cookie_only() {
        let c = config(CookieKey::Plain);
        let id = Id::default();
        // A large jar of other cookies (9 KiB and 40 KiB) does not matter.
        let big = format!("id={id}; pad={}", "x".repeat(9000));
        assert_eq!(c.hid(&headers(&[&big])), Ok(id));
        let jar: Vec<String> = (0..10)
            .map(|i| format!("c{i}={}", "y".repeat(4000)))
            .collect();
        let jar = format!("{}; id={id}", jar.join("; "));
        assert_eq!(c.hid(&headers(&[&jar, "z=1"])), Ok(id));
        // An oversized session cookie is refused without being parsed, even beside a good one
        // that it would override (the last duplicate wins).
        let huge = format!("id={}", "A".repeat(9000));
        assert_eq!(c.hid(&headers(&[&huge])), Err(InvalidReason::Malformed));
        assert_eq!(
            c.hid(&headers(&[&format!("id={id}"), &huge])),
            Err(InvalidReason::Malformed)
        );
        assert_eq!(c.hid(&headers(&[&huge, &format!("id={id}")])), Ok(id));
        assert_eq!(c.vid(&"A".repeat(9000)), Err(InvalidReason::Malformed));
        // An encoded name that decodes to the session cookie's is still found.
        assert_eq!(c.hid(&headers(&[&format!("%69d={id}")])), Ok(id));
    }

    #[test]
    fn only_signed_private_and_express_values_are_verified() {
        let id = Id::default();
        let h = headers(&[&format!("id={id}")]);
        assert!(
            !config(CookieKey::Plain)
                .id_from_headers(&h)
                .unwrap()
                .verified
        );
        let key = Key::generate();
        let mut jar = CookieJar::new();
        jar.signed_mut(&key).add(Cookie::new("id", id.to_string()));
        let value = jar.delta().next().unwrap().value().to_owned();
        let signed = config(CookieKey::Signed(key));
        assert!(signed.id_from_value(&value).unwrap().verified);
        let secrets = ExpressSecrets::new(["s"]).unwrap();
        let express = CookieConfig {
            name: "connect.sid".into(),
            ..config(CookieKey::Express(secrets.clone()))
        };
        assert!(
            express
                .id_from_value(&secrets.sign("abc"))
                .unwrap()
                .verified
        );
    }
}
