//! Recording policy: `hearken policy explain`, meetings over the API,
//! admission, the join-request webhook, malformed input.

mod admission;
mod explain;
mod malformed;
mod scheduler;
