//! What a relay reads to show, never to act on: the watcher (heads, balances, lane nonces,
//! store counts), conservation per asset and vote divergence, and the lane status model shared
//! by `/status` and `multibridge status`.

pub mod allocator;
pub mod conservation;
pub mod drift;
pub mod missing_votes;
pub mod status;
pub mod watcher;
