//! Where the bucketed counts live: [`memory`] (this process, with an optional snapshot file)
//! or [`redis`] (shared by every replica, with a bounded local buffer while it is away).

pub(crate) mod memory;
pub(crate) mod redis;
