//! The control plane: where each call and session lives, which meetings
//! are recorded, and the join requests sent to the provider. Nothing here
//! is on the packet path.

pub mod meetings;
pub mod registry;
pub mod scheduler;
