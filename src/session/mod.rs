//! The bind stage and what handlers use: the live session (one per id per node), the state and
//! its change log, the policy, the handle, the flood watch on a socket's refused events, and the
//! schedule where live sessions publish their expiries.

mod expiries;
mod flood;
mod handle;
mod live;
mod policy;
mod registry;
mod state;

pub(crate) use expiries::Expiries;
pub use handle::SocketSession;
pub(crate) use handle::{Binding, Connected, Phase};
pub(crate) use live::LiveSession;
pub(crate) use policy::Policy;
pub(crate) use registry::Registry;
