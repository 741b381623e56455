//! The bind stage and what handlers use: the live session (one per id per node), the state and
//! its change log, the policy, the handle, and the flood watch on a socket's refused events.

mod flood;
mod handle;
mod live;
mod policy;
mod registry;
mod state;

pub use handle::SocketSession;
pub(crate) use handle::{Binding, Connected};
pub(crate) use live::LiveSession;
pub(crate) use policy::Policy;
pub(crate) use registry::Registry;
