//! The recovery worker (DESIGN.md §5): compares the source `requestNonce` with the destination
//! `lowerHandleNonce`, detects stalls, re-filters request events from `recoveryBlockNumber` and
//! feeds what is still unhandled back to the voter. Needs no local state to be correct.
//!
//! Skeleton: the worker arrives with the recovery issue.
#![forbid(unsafe_code)]
