//! `store_tests!`: runs a suite's cases on every store, after tower-sessions' `route_tests!`.
//!
//! A suite writes each case once, as `cases::name(backend: Backend)`, and lists the stores and
//! the cases; every (store, case) pair becomes a test named `store::case`:
//!
//! ```ignore
//! mod cases {
//!     pub async fn logout_ends_the_socket(b: Backend) { /* ... */ }
//! }
//!
//! store_tests! {
//!     stores: [memory => Backend::Memory, redis => Backend::Redis],
//!     cases: [logout_ends_the_socket],
//! }
//! // memory::logout_ends_the_socket, redis::logout_ends_the_socket
//! ```

/// Expands `cases::<case>(<backend>)` into `mod <store> { #[tokio::test] async fn <case>() }`
/// for every store and case (see the module docs).
#[allow(unused_macros)] // Not every suite runs on every store.
macro_rules! store_tests {
    (
        stores: [$($store:ident => $backend:expr),* $(,)?],
        cases: $cases:tt $(,)?
    ) => {
        $(
            mod $store {
                use super::*;
                $crate::common::store_tests!(@cases $backend; $cases);
            }
        )*
    };
    (@cases $backend:expr; [$($case:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::cases::$case($backend).await
            }
        )*
    };
}

pub(crate) use store_tests;
