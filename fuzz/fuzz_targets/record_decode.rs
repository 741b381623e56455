//! Session records as the stores decode them: connect-redis JSON values (and re-encoding
//! them), and the MessagePack records of the Redis and SQLite stores.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use socketio_sessions::store::ConnectRedisStore;
use tower_sessions::session::{Id, Record};

fuzz_target!(|data: &[u8]| {
    let id = Id(1);
    if let Ok(Some(record)) = ConnectRedisStore::decode(&id, data, 60_000) {
        // Writing the same data back keeps the value's meaning.
        let out = ConnectRedisStore::encode(data, &record.data).unwrap();
        let again = ConnectRedisStore::decode(&id, out.as_bytes(), 60_000).unwrap();
        if let Some(again) = again {
            assert_eq!(again.data, record.data);
        }
        let mut changed: HashMap<String, serde_json::Value> = record.data.clone();
        changed.insert("count".into(), serde_json::json!(1));
        let _ = ConnectRedisStore::encode(data, &changed).unwrap();
    }
    let _ = rmp_serde::from_slice::<Record>(data);
});
