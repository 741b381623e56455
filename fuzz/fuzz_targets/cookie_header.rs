//! Cookie and Origin headers → session id, in every cookie format, and the origin check.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use socketio_sessions::{ExpressSecrets, OriginPolicy, SocketSessions, store::MemoryStore};
use tower_sessions::cookie::Key;

fn configs() -> &'static [SocketSessions; 4] {
    static CONFIGS: OnceLock<[SocketSessions; 4]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let key = Key::from(&[7u8; 64]);
        let base = || SocketSessions::builder(MemoryStore::default()).with_any_origin();
        [
            base().build().unwrap(),
            base().with_signed(key.clone()).build().unwrap(),
            base().with_private(key).build().unwrap(),
            base()
                .with_express(ExpressSecrets::new(["s3cret", "old"]).unwrap())
                .build()
                .unwrap(),
        ]
    })
}

fn policy() -> &'static OriginPolicy {
    static POLICY: OnceLock<OriginPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        OriginPolicy::allow_list(["https://app.example.com", "http://*.example.org:8080"]).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    // Split the input over up to three Cookie headers, as HTTP/2 may.
    let mut headers = HeaderMap::new();
    for part in data.splitn(3, |b| *b == 0xff) {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(header::COOKIE, v);
        }
    }
    for config in configs() {
        let _ = config.session_id(&headers);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = policy().allows(Some(s));
    }
});
