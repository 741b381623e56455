//! How live sessions behave, fixed at build: the mode, write-behind, rolling expiry and the
//! limits on what sockets store and queue.

use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, Mode};
use crate::error::SessionError;
use crate::store::FORWARD_KEY;

/// The behaviour every live session of one configuration shares.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) mode: Mode,
    /// Per-connection mode: save within this delay of the first unsaved change.
    pub(crate) write_behind: Option<Duration>,
    /// Rolling expiry: at most one extending write per interval.
    pub(crate) rolling: Option<Duration>,
    pub(crate) limits: Limits,
    /// The most handlers of one session waiting for its turn on this node.
    pub(crate) max_waiting: usize,
    /// Salts session tags, so that a tag in a log cannot be matched to a session elsewhere.
    pub(crate) salt: [u8; 16],
}

impl Policy {
    pub(crate) fn new(config: &Config) -> Self {
        Policy {
            mode: config.mode,
            write_behind: config.write_behind,
            rolling: config.rolling,
            limits: Limits {
                bytes: config.max_value_bytes,
                depth: config.max_depth,
            },
            max_waiting: config.max_waiting_handlers,
            salt: tower_sessions::session::Id::default().0.to_le_bytes(),
        }
    }
}

/// The size and depth limits on values sockets store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) bytes: usize,
    pub(crate) depth: usize,
}

impl Limits {
    pub(crate) fn check(self, key: &str, value: &Value) -> Result<(), SessionError> {
        if key == FORWARD_KEY {
            return Err(SessionError::ReservedKey(key.to_owned()));
        }
        if depth(value) > self.depth {
            return Err(SessionError::TooDeep {
                key: key.to_owned(),
                limit: self.depth,
            });
        }
        let size = json_len(value);
        if size > self.bytes {
            return Err(SessionError::TooLarge {
                key: key.to_owned(),
                size,
                limit: self.bytes,
            });
        }
        Ok(())
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The length of a value's JSON text, without building it.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, v).expect("a JSON value encodes");
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_over_the_limits_are_refused() {
        let limits = Limits {
            bytes: 16,
            depth: 3,
        };
        assert!(limits.check("k", &json!("0123456789")).is_ok());
        assert!(matches!(
            limits.check("k", &json!("0123456789abcdefgh")),
            Err(SessionError::TooLarge {
                size: 20,
                limit: 16,
                ..
            })
        ));
        assert!(limits.check("k", &json!([[[1]]])).is_ok());
        assert!(matches!(
            limits.check("k", &json!([[[[1]]]])),
            Err(SessionError::TooDeep { limit: 3, .. })
        ));
        assert!(matches!(
            limits.check(FORWARD_KEY, &json!("x")),
            Err(SessionError::ReservedKey(_))
        ));
        assert_eq!(
            json_len(&json!({"a": [1, "é"]})),
            serde_json::to_vec(&json!({"a": [1, "é"]})).unwrap().len()
        );
        assert_eq!(depth(&json!({"a": {"b": []}})), 3);
        assert_eq!(depth(&json!(1)), 0);
    }
}
