//! The sessions of an Express app, as connect-redis keeps them: key `sess:<sid>`, value the
//! session's JSON (`{"cookie": {...}, ...app fields}`), TTL from `cookie.expires`.
//!
//! Writes keep the `cookie` object and every field the socket did not change byte for byte
//! (they are copied from the exact bytes read), compute the TTL as connect-redis does, never
//! write with a TTL of 0 or less, and are conditional on the exact bytes read: Express writes
//! whole values without conditions, so comparing bytes is what detects its writes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::prelude::Pool;
use fred::types::Value as RedisValue;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::merge::Target;
use super::redis_fence::{Fence, Script, fenced_script};
use super::redis_pool::{WRITE_WITHIN, connect_pool, eval_once, write_options};
use super::redis_url::redis_config;
use super::replica_wait::{ReplicaWait, write_bound};
use super::{
    ConditionalStore, Merged, SaveOutcome, Version, Versioned, backend_error, save_merged,
};
use crate::id::express;
use crate::task::locked;

/// GET with the remaining TTL in ms, in one round trip.
static LOAD: Script = Script::new(
    r#"
local v = redis.call('GET', KEYS[1])
if not v then return nil end
return {v, redis.call('PTTL', KEYS[1])}
"#,
);

/// SET with `EX ARGV[3]` only if the key still holds exactly ARGV[1].
/// Returns 1 when written, 0 when the value differs, -1 when the key is gone, -2 (writing
/// nothing) past the deadline in ARGV[4] ([fenced](super::redis_fence)).
static SAVE_IF: Script = Script::new(fenced_script!(
    r#"
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"#
));

/// connect-redis's TTL without `cookie.expires`: one day.
const DEFAULT_TTL_SECS: i64 = 86_400;

/// Express sessions in the connect-redis format. Use with
/// [`SocketSessionsBuilder::with_express`](crate::SocketSessionsBuilder::with_express); the
/// Express app stays the one that creates sessions.
#[derive(Clone)]
pub struct ConnectRedisStore {
    pool: Pool,
    prefix: Arc<str>,
    default_ttl: i64,
    /// The sids behind the ids of live sessions, counted (several sockets' sessions, or several
    /// session configurations over clones of this store, may hold one): records are keyed by
    /// sid, sessions by an id derived from it, and the derivation is one-way. Shared by clones,
    /// behind a std mutex held only to copy an entry.
    sids: Arc<Mutex<SidTable>>,
    /// `None`: a save returns once the primary has it.
    wait: Option<ReplicaWait>,
    /// How long a save may wait to be sent and answered before it is abandoned for good.
    write_within: Duration,
    /// The anchor of its saves' deadlines in the server's clock: one per store, shared by its
    /// clones (they use the same servers).
    fence: Arc<Fence>,
}

/// Each live session's sid, with how many live sessions hold it.
type SidTable = HashMap<Id, (Arc<str>, usize)>;

impl fmt::Debug for ConnectRedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectRedisStore")
            .field("prefix", &self.prefix)
            .field("default_ttl", &self.default_ttl)
            .field("wait", &self.wait)
            .finish()
    }
}

impl ConnectRedisStore {
    /// A store over a connected fred pool, with connect-redis's defaults: prefix `sess:`, TTL
    /// one day when the cookie has no `expires`.
    pub fn new(pool: Pool) -> Self {
        ConnectRedisStore {
            pool,
            prefix: "sess:".into(),
            default_ttl: DEFAULT_TTL_SECS,
            sids: Arc::default(),
            wait: None,
            write_within: WRITE_WITHIN,
            fence: Arc::default(),
        }
    }

    /// Connects a pool of 4 clients to the Express app's Redis at `url`: `redis://HOST:PORT`,
    /// or a cluster as `redis-cluster://HOST:PORT[,HOST:PORT...]` (connect-redis with an
    /// ioredis `Cluster` client); see [`RedisStore::connect`](super::RedisStore::connect).
    pub async fn connect(url: &str) -> Result<Self, fred::error::Error> {
        Ok(ConnectRedisStore::new(
            connect_pool(redis_config(url)?, 4).await?,
        ))
    }

    /// How long a save or a delete may take to be sent and answered before it fails and is
    /// abandoned for good (default 500 ms): see
    /// [`RedisStore::with_write_timeout`](super::RedisStore::with_write_timeout).
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_within = timeout;
        self
    }

    /// Makes every save and delete wait until `replicas` replicas have it, at most `timeout`:
    /// see [`RedisStore::with_replica_wait`](super::RedisStore::with_replica_wait). The Express
    /// app's own writes do not wait.
    pub fn with_replica_wait(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some(ReplicaWait { replicas, timeout });
        self
    }

    /// connect-redis's `prefix` option.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    /// connect-redis's `ttl` option, in seconds (used when the cookie has no `expires`).
    pub fn with_default_ttl(mut self, secs: u32) -> Self {
        self.default_ttl = i64::from(secs).max(1);
        self
    }

    /// The pool, e.g. to close it.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn key(&self, id: &Id) -> session_store::Result<String> {
        let sid = locked(&self.sids).get(id).map(|(sid, _)| sid.clone());
        let sid = sid.ok_or_else(|| {
            session_store::Error::Backend(
                "not an express session known here: this store serves sessions read from an \
                 express-session cookie (`with_express`)"
                    .into(),
            )
        })?;
        Ok(format!("{}{sid}", self.prefix))
    }

    /// The TTL connect-redis would set for a session with this `cookie` object.
    fn ttl(&self, cookie: Option<&RawValue>) -> i64 {
        match expires(cookie) {
            Some(at) => {
                let ms = (at - OffsetDateTime::now_utc()).whole_milliseconds();
                ms.div_euclid(1000) as i64 + i64::from(ms.rem_euclid(1000) != 0)
            }
            None => self.default_ttl,
        }
    }
}

/// The top-level fields of a session's JSON, in order, each as its exact text.
struct RawObject(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<RawObject, M::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = m.next_entry::<String, Box<RawValue>>()? {
                    fields.push(entry);
                }
                Ok(RawObject(fields))
            }
        }
        d.deserialize_map(V)
    }
}

impl RawObject {
    fn parse(bytes: &[u8]) -> session_store::Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| session_store::Error::Decode(e.to_string()))
    }

    fn cookie(&self) -> Option<&RawValue> {
        self.0
            .iter()
            .find(|(k, _)| k == "cookie")
            .map(|(_, v)| v.as_ref())
    }

    /// The JSON with `data` as the app fields: unchanged fields and `cookie` copied as they
    /// were, changed ones re-encoded, removed ones dropped, new ones appended.
    fn with_data(&self, data: &HashMap<String, Value>) -> String {
        let mut out = String::from("{");
        let push = |out: &mut String, key: &str, json: &str| {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(key).expect("a string encodes"));
            out.push(':');
            out.push_str(json);
        };
        for (key, raw) in &self.0 {
            if key == "cookie" {
                push(&mut out, key, raw.get());
                continue;
            }
            match data.get(key) {
                Some(v) if serde_json::from_str::<Value>(raw.get()).ok().as_ref() == Some(v) => {
                    push(&mut out, key, raw.get());
                }
                Some(v) => push(&mut out, key, &v.to_string()),
                None => {}
            }
        }
        let mut added: Vec<_> = data
            .iter()
            .filter(|(k, _)| k.as_str() != "cookie" && !self.0.iter().any(|(o, _)| o == *k))
            .collect();
        added.sort_by(|a, b| a.0.cmp(b.0));
        for (key, v) in added {
            push(&mut out, key, &v.to_string());
        }
        out.push('}');
        out
    }
}

#[derive(Deserialize)]
struct CookieFields {
    expires: Option<String>,
}

/// `cookie.expires`, when set and readable.
fn expires(cookie: Option<&RawValue>) -> Option<OffsetDateTime> {
    let fields: CookieFields = serde_json::from_str(cookie?.get()).ok()?;
    OffsetDateTime::parse(&fields.expires?, &Rfc3339).ok()
}

/// The record of a stored session, or `None` when its `cookie.expires` has passed.
fn to_record(id: &Id, bytes: &[u8], pttl_ms: i64) -> session_store::Result<Option<Record>> {
    let obj = RawObject::parse(bytes)?;
    let now = OffsetDateTime::now_utc();
    let expiry_date = match expires(obj.cookie()) {
        Some(at) if at <= now => return Ok(None),
        Some(at) => at,
        None if pttl_ms > 0 => now + time::Duration::milliseconds(pttl_ms),
        None => now + time::Duration::seconds(DEFAULT_TTL_SECS),
    };
    let mut data = std::collections::HashMap::new();
    for (key, raw) in obj.0 {
        if key != "cookie" {
            let value = serde_json::from_str(raw.get())
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
            data.insert(key, value);
        }
    }
    Ok(Some(Record {
        id: *id,
        data,
        expiry_date,
    }))
}

#[doc(hidden)]
impl ConnectRedisStore {
    /// Reads a connect-redis value as this store does: the app fields as the record's data,
    /// `None` when `cookie.expires` has passed. `pttl_ms` is the key's remaining TTL. For the
    /// fuzz targets.
    pub fn decode(id: &Id, value: &[u8], pttl_ms: i64) -> session_store::Result<Option<Record>> {
        to_record(id, value, pttl_ms)
    }

    /// The value this store writes for `data` over the stored `value`: `cookie` and every
    /// unchanged field copied byte for byte. For the fuzz targets.
    pub fn encode(
        value: &[u8],
        data: &std::collections::HashMap<String, Value>,
    ) -> session_store::Result<String> {
        Ok(RawObject::parse(value)?.with_data(data))
    }
}

#[async_trait]
impl SessionStore for ConnectRedisStore {
    async fn create(&self, _: &mut Record) -> session_store::Result<()> {
        Err(session_store::Error::Backend(
            "express sessions are created by the Express app, not here".into(),
        ))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        // Unconditional (the whole data replaces the stored fields), but through the one merged
        // save: it never creates a session and keeps the cookie object and untouched bytes.
        let mut changes = WholeData(&record.data);
        let date = || record.expiry_date;
        match save_merged(self, record.id, None, &mut changes, &date).await {
            Ok(Merged::Saved { .. } | Merged::Gone) => Ok(()),
            Err(e) => Err(match e {
                super::MergeError::Store(e) => e,
                super::MergeError::Changes(e) => session_store::Error::Encode(e.to_string()),
                super::MergeError::Contended => session_store::Error::Backend(format!(
                    "the session kept changing under this save; gave up after {} attempts",
                    super::MAX_ATTEMPTS
                )),
            }),
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self.load_versioned(id).await?.map(|v| v.record))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let key = self.key(id)?;
        let client = self.pool.next();
        let _: i64 = client
            .with_options(&write_options(client, self.write_within))
            .del(key.as_str())
            .await
            .map_err(backend_error)?;
        match &self.wait {
            Some(wait) => wait.confirm(client, &key).await,
            None => Ok(()),
        }
    }
}

/// A whole-record write: the stored fields become exactly these.
struct WholeData<'a>(&'a HashMap<String, Value>);

impl super::Changes for WholeData<'_> {
    fn reapply(&mut self, record: &mut Record) -> Result<(), crate::SessionError> {
        record.data.clone_from(self.0);
        Ok(())
    }
}

impl Target for ConnectRedisStore {
    type Error = session_store::Error;

    fn conditional(&self) -> bool {
        true
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        self.load_versioned(id).await
    }

    async fn save_if(
        &self,
        record: &Record,
        expected: &Version,
    ) -> session_store::Result<SaveOutcome> {
        ConditionalStore::save_if(self, record, expected).await
    }
}

#[async_trait]
impl ConditionalStore for ConnectRedisStore {
    // Fenced: past its caller's deadline a save's script writes nothing.
    fn refuses_late_saves(&self) -> bool {
        true
    }

    fn write_timeout(&self) -> Option<Duration> {
        Some(write_bound(self.write_within, self.wait))
    }

    fn hold_external_key(&self, id: &Id, key: &Arc<str>) {
        locked(&self.sids)
            .entry(*id)
            .or_insert_with(|| (key.clone(), 0))
            .1 += 1;
    }

    fn release_external_key(&self, id: &Id) {
        let mut sids = locked(&self.sids);
        if let Some(entry) = sids.get_mut(id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                sids.remove(id);
            }
        }
    }

    fn id_for_key(&self, key: &str) -> Option<Id> {
        key.strip_prefix(&*self.prefix).map(express::derive_id)
    }

    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        let key = self.key(id)?;
        let answer: RedisValue = LOAD
            .read(&self.pool, vec![key.into()])
            .await
            .map_err(backend_error)?;
        let RedisValue::Array(parts) = answer else {
            return Ok(None);
        };
        let (Some(value), Some(pttl)) = (parts.first(), parts.get(1)) else {
            return Ok(None);
        };
        let bytes = value
            .as_bytes()
            .map(<[u8]>::to_vec)
            .or_else(|| value.as_string().map(String::into_bytes))
            .ok_or_else(|| session_store::Error::Decode("session value is not a string".into()))?;
        let pttl = pttl.as_i64().unwrap_or(-1);
        Ok(to_record(id, &bytes, pttl)?.map(|record| Versioned {
            record,
            version: Version::from_bytes(bytes),
        }))
    }

    async fn save_if(
        &self,
        record: &Record,
        expected: &Version,
    ) -> session_store::Result<SaveOutcome> {
        let base = RawObject::parse(expected.as_bytes())?;
        let ttl = self.ttl(base.cookie());
        if ttl <= 0 {
            // Expired by its cookie: connect-redis would delete it, never write it.
            return Ok(SaveOutcome::Gone);
        }
        let json = base.with_data(&record.data);
        let args: Vec<RedisValue> = vec![
            RedisValue::Bytes(expected.as_bytes().to_vec().into()),
            RedisValue::String(json.clone().into()),
            RedisValue::Integer(ttl),
        ];
        let key = self.key(&record.id)?;
        // One client for the write and the wait: `WAIT` counts its own connection's writes.
        let client = self.pool.next();
        let answer = eval_once(client, &self.fence, &SAVE_IF, &key, args, self.write_within)
            .await
            .map_err(backend_error)?;
        Ok(match answer {
            1 => {
                if let Some(wait) = &self.wait {
                    wait.confirm(client, &key).await?;
                }
                SaveOutcome::Saved(Version::from_bytes(json.into_bytes()))
            }
            0 => SaveOutcome::Conflict,
            _ => SaveOutcome::Gone,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_fields_keep_their_exact_bytes() {
        let stored = br#"{"cookie":{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"},"user":"ann","n":1.50,"x":{"b":1,"a":"\u00e9"},"count":1}"#;
        let id = Id::default();
        let record = to_record(&id, stored, 86_400_000).unwrap().unwrap();
        let mut data = record.data;
        data.insert("count".into(), serde_json::json!(2));
        data.remove("user");
        data.insert("added".into(), serde_json::json!(true));
        let out = RawObject::parse(stored).unwrap().with_data(&data);
        assert_eq!(
            out,
            r#"{"cookie":{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"},"n":1.50,"x":{"b":1,"a":"\u00e9"},"count":2,"added":true}"#
        );
    }

    #[test]
    fn expired_cookie_means_no_session() {
        let id = Id::default();
        let past = br#"{"cookie":{"expires":"2001-01-01T00:00:00.000Z"},"user":"x"}"#;
        assert!(to_record(&id, past, 1000).unwrap().is_none());
        let future = br#"{"cookie":{"expires":"2999-01-01T00:00:00.000Z"},"user":"x"}"#;
        let r = to_record(&id, future, 1000).unwrap().unwrap();
        assert_eq!(r.expiry_date.year(), 2999);
        assert!(to_record(&id, b"not json", 1).is_err());
    }
}
