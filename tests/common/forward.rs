//! `session_store_via_inner!`: the plain `SessionStore` half of a test's wrapper store, every
//! call handed to its `inner` store, so that a wrapper writes out only the conditional calls it
//! changes.

/// Implements `tower_sessions::SessionStore` for `$store` by calling `self.inner`.
#[allow(unused_macros)] // Not every suite wraps a store.
macro_rules! session_store_via_inner {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::tower_sessions::session_store::SessionStore for $store {
            async fn create(
                &self,
                r: &mut ::tower_sessions::session::Record,
            ) -> ::tower_sessions::session_store::Result<()> {
                ::tower_sessions::session_store::SessionStore::create(&self.inner, r).await
            }
            async fn save(
                &self,
                r: &::tower_sessions::session::Record,
            ) -> ::tower_sessions::session_store::Result<()> {
                ::tower_sessions::session_store::SessionStore::save(&self.inner, r).await
            }
            async fn load(
                &self,
                id: &::tower_sessions::session::Id,
            ) -> ::tower_sessions::session_store::Result<Option<::tower_sessions::session::Record>>
            {
                ::tower_sessions::session_store::SessionStore::load(&self.inner, id).await
            }
            async fn delete(
                &self,
                id: &::tower_sessions::session::Id,
            ) -> ::tower_sessions::session_store::Result<()> {
                ::tower_sessions::session_store::SessionStore::delete(&self.inner, id).await
            }
        }
    };
}

pub(crate) use session_store_via_inner;
