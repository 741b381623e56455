//! A session's state as this node knows it, and the log of changes not saved yet. Pure data:
//! no store, no runtime, tested on its own.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use time::OffsetDateTime;
use tower_sessions::session::Record;

use crate::error::SessionError;
use crate::store::{Changes, Version, Versioned};

/// Re-runs an `update` closure on a (possibly fresher) value of the key it is given (the key is
/// passed in, not captured: the op already owns it, so an update allocates it once).
pub(crate) type Updater = Box<dyn FnMut(&str, Option<Value>) -> Result<Value, SessionError> + Send>;

/// One change a socket made, kept until it is saved so that it can be re-applied to a fresher
/// record when a conditional save conflicts.
pub(crate) enum Op {
    /// `insert` (`Some`) or `remove` (`None`): the last write to the key wins.
    Set(String, Option<Value>),
    /// `update`: re-run on the key's current value.
    Update(String, Updater),
    /// Nothing to change, but save (rolling expiry: the save moves the expiry forward).
    Touch,
}

/// One logged change: when it was made, what it was, and the key's value before it, so that
/// an unsaved change can be undone without a copy of the record kept beside it.
pub(crate) struct Change {
    made: SystemTime,
    op: Op,
    before: Option<Value>,
}

impl Change {
    /// The key this change wrote, if it wrote one.
    fn key(&self) -> Option<&str> {
        match &self.op {
            Op::Set(key, _) | Op::Update(key, _) => Some(key),
            Op::Touch => None,
        }
    }
}

/// The record as last read from or written to the store, with its version.
pub(crate) struct Known {
    /// The record with this state's unsaved changes applied in place (the log can undo them).
    /// A pointer, not the record: every live session has the slot, and a merged save hands back
    /// the record it saved without a copy. `None` while [packed](State::pack): the version
    /// holds the record's stored bytes, which [`unpack`](State::unpack) decodes again.
    pub(crate) record: Option<Arc<Record>>,
    /// The version the record had before the unsaved changes.
    pub(crate) version: Version,
}

impl From<Versioned> for Known {
    fn from(v: Versioned) -> Self {
        Known {
            record: Some(Arc::new(v.record)),
            version: v.version,
        }
    }
}

/// The session's state as this node knows it.
#[derive(Default)]
pub(crate) struct State {
    /// The record as last read from or written to the store, with its version, and this
    /// state's unsaved changes applied (the local view); `None` once the session is known to be
    /// gone. Changed in place: a written message copies no record.
    pub(crate) base: Option<Known>,
    /// Changes not saved yet, in order, each with when it was made (only changes made before an
    /// id rotation follow the session to its new id) and what it replaced (to undo it). A
    /// `SystemTime`: reading it is a clock call, while an `OffsetDateTime` adds a calendar
    /// conversion on every change.
    pub(crate) ops: Vec<Change>,
    /// Per-message mode: keys read since `base`; a save fails if one of them changed meanwhile.
    /// A handler reads a few keys: a list is cheaper than a hashed set.
    pub(crate) reads: Vec<String>,
    /// Loaded at connect and not yet handed to a handler: the connect handler may use it
    /// without another reload.
    pub(crate) fresh: bool,
}

impl State {
    pub(crate) fn reset(&mut self, loaded: Option<Known>) {
        self.base = loaded;
        self.ops.clear();
        self.reads.clear();
    }

    /// The local view was saved as it is, at `version`.
    pub(crate) fn saved(&mut self, version: Version) {
        if let Some(base) = &mut self.base {
            base.version = version;
        }
        self.ops.clear();
        self.reads.clear();
    }

    /// Drops unsaved changes, back to the last stored state: each is undone, the last first.
    pub(crate) fn discard(&mut self) {
        let record = self.base.as_mut().and_then(|b| b.record.as_mut());
        if let Some(record) = record.filter(|_| !self.ops.is_empty()) {
            let record = Arc::make_mut(record);
            for Change { op, before, .. } in self.ops.drain(..).rev() {
                let (Op::Set(key, _) | Op::Update(key, _)) = op else {
                    continue;
                };
                match before {
                    Some(v) => record.data.insert(key, v),
                    None => record.data.remove(&key),
                };
            }
        }
        self.ops.clear();
        self.reads.clear();
    }

    /// Between per-message handlers, with nothing unsaved: drops the decoded record when its
    /// version holds the stored bytes (the Redis and SQL stores), keeping only those. An idle
    /// session then costs the record's bytes, not its decoded maps and strings; the next
    /// handler decodes them again ([`unpack`](Self::unpack)), one decode more per handler
    /// than a reload of unchanged bytes costs.
    pub(crate) fn pack(&mut self) {
        if !self.ops.is_empty() {
            return;
        }
        if let Some(known) = &mut self.base
            && known.version.holds_record()
        {
            known.record = None;
        }
    }

    /// Decodes a [packed](Self::pack) record again. Bytes that do not decode (they did when
    /// they were loaded or saved) leave no base and no fresh load: a handler's catch-up then
    /// loads the record from the store.
    pub(crate) fn unpack(&mut self) {
        let Some(known) = &mut self.base else {
            return;
        };
        if known.record.is_none() {
            match known.version.record() {
                Some(record) => known.record = Some(Arc::new(record)),
                None => {
                    self.base = None;
                    self.fresh = false;
                }
            }
        }
    }

    /// The local view: the record as last stored with the unsaved changes; `None` once the
    /// session is known to be gone. Never asked of a packed state: every path that takes the
    /// state unpacks it first.
    pub(crate) fn base_record(&self) -> Option<&Arc<Record>> {
        let base = self.base.as_ref()?;
        debug_assert!(
            base.record.is_some(),
            "a packed state is read before it is unpacked"
        );
        base.record.as_ref()
    }

    /// The local view; `None` once the session is known to be gone.
    pub(crate) fn record(&self) -> Option<&Record> {
        self.base_record().map(|r| &**r)
    }

    /// The local view, to change it in place (nothing else holds it: no copy).
    fn record_mut(&mut self) -> Option<&mut Record> {
        self.base.as_mut()?.record.as_mut().map(Arc::make_mut)
    }

    /// The value under `key` in the local view, noting the read when `track` (a per-message
    /// save fails if a key its handler read has changed meanwhile).
    pub(crate) fn read(&mut self, key: &str, track: bool) -> Option<&Value> {
        if track && !self.reads.iter().any(|k| k == key) {
            self.reads.push(key.to_owned());
        }
        self.record()?.data.get(key)
    }

    /// Writes or removes one key; refuses when the session is gone. Returns the old value.
    pub(crate) fn set(
        &mut self,
        key: &str,
        value: Option<Value>,
    ) -> Result<Option<Value>, SessionError> {
        let current = self.record().ok_or(SessionError::Gone)?.data.get(key);
        match (&value, current) {
            (Some(v), Some(c)) if v == c => return Ok(Some(c.clone())),
            (None, None) => return Ok(None),
            _ => {}
        }
        let record = self.record_mut().ok_or(SessionError::Gone)?;
        let old = match (&value, record.data.get_mut(key)) {
            (Some(v), Some(slot)) => Some(std::mem::replace(slot, v.clone())),
            (Some(v), None) => record.data.insert(key.to_owned(), v.clone()),
            (None, _) => record.data.remove(key),
        };
        self.log(Op::Set(key.to_owned(), value), old.clone());
        Ok(old)
    }

    /// Runs `f` on the key's value, stores the result and logs it to be re-run on conflict.
    pub(crate) fn update(
        &mut self,
        key: &str,
        mut f: Updater,
    ) -> Result<Value, (SessionError, Updater)> {
        let Some(record) = self.record_mut() else {
            return Err((SessionError::Gone, f));
        };
        // On an error `f` comes back: a caller whose record may be stale runs it again on a
        // fresher one before reporting the error. The key is looked up once and, when present
        // (nearly always), written in place: no second hash, no copy of the key.
        let slot = record.data.get_mut(key);
        let new = match f(key, slot.as_deref().cloned()) {
            Ok(new) => new,
            Err(e) => return Err((e, f)),
        };
        let before = match slot {
            Some(slot) => Some(std::mem::replace(slot, new.clone())),
            None => record.data.insert(key.to_owned(), new.clone()),
        };
        self.log(Op::Update(key.to_owned(), f), before);
        Ok(new)
    }

    /// Logs a change, made now, with the key's value before it.
    pub(crate) fn log(&mut self, op: Op, before: Option<Value>) {
        self.ops.push(Change {
            made: SystemTime::now(),
            op,
            before,
        });
    }

    /// What a save needs from the state, borrowed apart: the local view, the version it was
    /// made on, and the changes to re-apply.
    pub(crate) fn pending(&mut self, check_reads: bool) -> Option<Pending<'_>> {
        let base = self.base.as_mut()?;
        Some(Pending {
            view: base.record.as_mut()?,
            version: &base.version,
            log: OpLog {
                ops: &mut self.ops,
                rotated_at: None,
                reads: check_reads.then_some(&self.reads[..]),
            },
        })
    }
}

/// The parts of a [`State`] a save works on.
pub(crate) struct Pending<'a> {
    /// The local view, saved as it is first (its expiry set through `Arc::make_mut`, in place).
    pub(crate) view: &'a mut Arc<Record>,
    pub(crate) version: &'a Version,
    pub(crate) log: OpLog<'a>,
}

/// A socket's unsaved changes, as the merged save re-applies them.
pub(crate) struct OpLog<'a> {
    ops: &'a mut [Change],
    /// Set once the session was found rotated at this time: only earlier changes follow it.
    /// The log itself is kept whole, so that the changes can still be undone.
    rotated_at: Option<SystemTime>,
    /// Per-message mode: the keys the handler read.
    reads: Option<&'a [String]>,
}

impl OpLog<'_> {
    /// Whether a change is to be applied: every change, or those made before a rotation.
    fn follows(&self, change: &Change) -> bool {
        self.rotated_at.is_none_or(|at| change.made < at)
    }

    /// The value `key` had when the handler read it: before the first change to it, or the
    /// view's when it has not changed.
    fn as_read<'r>(&'r self, key: &str, view: &'r Record) -> Option<&'r Value> {
        match self.ops.iter().find(|c| c.key() == Some(key)) {
            Some(first) => first.before.as_ref(),
            None => view.data.get(key),
        }
    }
}

impl Changes for OpLog<'_> {
    fn check(&self, view: Option<&Record>, fresh: &Record) -> Result<(), SessionError> {
        debug_assert!(
            view.is_some() || self.reads.is_none_or(<[String]>::is_empty),
            "reads are checked against the view they were made on"
        );
        let (Some(reads), Some(view)) = (self.reads, view) else {
            return Ok(());
        };
        match reads
            .iter()
            .find(|k| self.as_read(k, view) != fresh.data.get(*k))
        {
            Some(key) => Err(SessionError::Conflict { key: key.clone() }),
            None => Ok(()),
        }
    }

    fn reapply(&mut self, record: &mut Record) -> Result<(), SessionError> {
        let until = self.rotated_at;
        for change in self.ops.iter_mut() {
            if until.is_some_and(|at| change.made >= at) {
                continue;
            }
            match &mut change.op {
                Op::Set(key, Some(v)) => {
                    record.data.insert(key.clone(), v.clone());
                }
                Op::Set(key, None) => {
                    record.data.remove(key);
                }
                Op::Update(key, f) => {
                    let new = f(key, record.data.get(key).cloned())?;
                    record.data.insert(key.clone(), new);
                }
                Op::Touch => {}
            }
        }
        Ok(())
    }

    fn follow_rotation(&mut self, at: OffsetDateTime) -> bool {
        let at = SystemTime::from(at);
        self.rotated_at = Some(self.rotated_at.map_or(at, |earlier| earlier.min(at)));
        self.ops.iter().any(|c| self.follows(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Version;
    use serde_json::json;
    use tower_sessions::session::Id;

    fn known(data: Value) -> Known {
        loaded(data).into()
    }

    fn loaded(data: Value) -> Versioned {
        Versioned {
            record: Record {
                id: Id::default(),
                data: serde_json::from_value(data).unwrap(),
                expiry_date: time::OffsetDateTime::now_utc(),
            },
            version: Version::from_bytes(*b"v1"),
        }
    }

    #[test]
    fn changes_are_made_in_place_and_replay_on_a_fresher_one() {
        let mut st = State::default();
        st.reset(Some(known(json!({"count": 1, "name": "ann"}))));
        let record = Arc::as_ptr(st.base_record().unwrap());
        assert_eq!(st.read("count", false), Some(&json!(1)));
        let inc: Updater = Box::new(|_, v| Ok(json!(v.and_then(|v| v.as_u64()).unwrap_or(0) + 1)));
        assert_eq!(st.update("count", inc).ok(), Some(json!(2)));
        st.set("name", None).unwrap();
        assert_eq!(st.set("same", Some(json!(1))).unwrap(), None);
        assert_eq!(st.ops.len(), 3);
        // Setting a key to its current value logs nothing.
        st.set("same", Some(json!(1))).unwrap();
        assert_eq!(st.ops.len(), 3);
        assert_eq!(
            Arc::as_ptr(st.base_record().unwrap()),
            record,
            "changed in place, not copied"
        );

        let mut fresh = loaded(json!({"count": 10, "name": "bob", "other": true})).record;
        let pending = st.pending(false).unwrap();
        let mut log = pending.log;
        log.reapply(&mut fresh).unwrap();
        assert_eq!(fresh.data.get("count"), Some(&json!(11)));
        assert_eq!(fresh.data.get("name"), None);
        assert_eq!(fresh.data.get("other"), Some(&json!(true)));
        assert_eq!(fresh.data.get("same"), Some(&json!(1)));
    }

    #[test]
    fn only_changes_made_before_a_rotation_follow_it() {
        let mut st = State::default();
        st.reset(Some(known(json!({"a": 1}))));
        st.set("before", Some(json!(1))).unwrap();
        let rotated = OffsetDateTime::now_utc() + time::Duration::nanoseconds(1);
        std::thread::sleep(std::time::Duration::from_millis(2));
        st.set("after", Some(json!(2))).unwrap();
        let mut log = st.pending(false).unwrap().log;
        assert!(log.follow_rotation(rotated));
        let mut fresh = loaded(json!({})).record;
        log.reapply(&mut fresh).unwrap();
        assert_eq!(fresh.data.get("before"), Some(&json!(1)));
        assert_eq!(
            fresh.data.get("after"),
            None,
            "a change after the rotation stays behind"
        );
        let mut st = State::default();
        st.reset(Some(known(json!({}))));
        std::thread::sleep(std::time::Duration::from_millis(2));
        st.set("late", Some(json!(1))).unwrap();
        assert!(!st.pending(false).unwrap().log.follow_rotation(rotated));
    }

    #[test]
    fn a_changed_read_refuses_the_fresher_record() {
        let mut st = State::default();
        st.reset(Some(known(json!({"a": 1, "b": 1}))));
        st.read("a", true);
        st.set("b", Some(json!(2))).unwrap();
        let unchanged_a = loaded(json!({"a": 1, "b": 5})).record;
        let changed_a = loaded(json!({"a": 2, "b": 1})).record;
        let pending = st.pending(true).unwrap();
        let view = Some(&**pending.view);
        assert!(pending.log.check(view, &unchanged_a).is_ok());
        assert!(matches!(
            pending.log.check(view, &changed_a),
            Err(SessionError::Conflict { key }) if key == "a"
        ));
        // A key the handler read, then changed: compared as it was read, not as changed.
        let mut st = State::default();
        st.reset(Some(known(json!({"a": 1}))));
        st.read("a", true);
        st.set("a", Some(json!(2))).unwrap();
        st.set("a", Some(json!(3))).unwrap();
        let pending = st.pending(true).unwrap();
        let view = Some(&**pending.view);
        let as_read = loaded(json!({"a": 1, "b": 5})).record;
        assert!(pending.log.check(view, &as_read).is_ok());
        let moved = loaded(json!({"a": 3})).record;
        assert!(pending.log.check(view, &moved).is_err());
    }

    #[cfg(any(
        feature = "redis",
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql"
    ))]
    #[test]
    fn a_record_its_version_holds_is_packed_between_handlers_and_decoded_again() {
        let stored = loaded(json!({"user": "ann", "count": 3})).record;
        let bytes = rmp_serde::to_vec(&stored).unwrap();
        let mut st = State::default();
        st.reset(Some(Known::from(Versioned {
            record: stored,
            version: Version::of_msgpack(bytes),
        })));
        st.set("count", Some(json!(4))).unwrap();
        st.pack();
        assert!(
            st.base.as_ref().unwrap().record.is_some(),
            "unsaved changes keep it"
        );
        st.discard();
        st.pack();
        assert!(st.base.as_ref().unwrap().record.is_none(), "packed");
        st.unpack();
        assert_eq!(st.read("count", false), Some(&json!(3)));
        assert_eq!(st.read("user", false), Some(&json!("ann")));

        // A version that is not the record's bytes keeps the decoded record.
        let mut st = State::default();
        st.reset(Some(known(json!({"a": 1}))));
        st.pack();
        assert!(st.base.as_ref().unwrap().record.is_some());

        // Bytes that do not decode: no base and no fresh load, so the next handler loads.
        let mut st = State::default();
        st.reset(Some(Known {
            record: None,
            version: Version::of_msgpack(vec![0xc1]),
        }));
        st.fresh = true;
        st.unpack();
        assert!(st.base.is_none() && !st.fresh);
    }

    #[test]
    fn a_gone_session_refuses_writes_and_discard_restores_the_base() {
        let mut st = State::default();
        assert!(matches!(
            st.set("k", Some(json!(1))),
            Err(SessionError::Gone)
        ));
        st.reset(Some(known(json!({"k": 1, "gone": "x"}))));
        let stored = st.record().unwrap().clone();
        st.set("k", Some(json!(2))).unwrap();
        st.set("new", Some(json!(true))).unwrap();
        st.set("gone", None).unwrap();
        let inc: Updater = Box::new(|_, v| Ok(json!(v.and_then(|v| v.as_u64()).unwrap_or(0) + 1)));
        st.update("k", inc).ok().unwrap();
        st.set("new", Some(json!(false))).unwrap();
        st.discard();
        assert!(st.ops.is_empty());
        assert_eq!(st.read("k", false), Some(&json!(1)));
        assert_eq!(
            st.record().unwrap().data,
            stored.data,
            "every change undone"
        );
    }

    #[test]
    fn a_rotation_keeps_the_whole_log_so_that_it_can_still_be_undone() {
        let mut st = State::default();
        st.reset(Some(known(json!({"a": 1}))));
        st.set("a", Some(json!(2))).unwrap();
        let rotated = OffsetDateTime::now_utc() + time::Duration::nanoseconds(1);
        std::thread::sleep(std::time::Duration::from_millis(2));
        st.set("a", Some(json!(3))).unwrap();
        let mut log = st.pending(false).unwrap().log;
        assert!(log.follow_rotation(rotated));
        let mut fresh = loaded(json!({})).record;
        log.reapply(&mut fresh).unwrap();
        assert_eq!(fresh.data.get("a"), Some(&json!(2)));
        st.discard();
        assert_eq!(st.read("a", false), Some(&json!(1)));
    }
}
