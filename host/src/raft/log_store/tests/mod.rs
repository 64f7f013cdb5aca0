//! Tests of the durable log store: openraft's conformance suite, reopen, kill -9, and
//! torn/corrupted tails.

mod conformance;
mod corrupt;
mod crash;
mod payload_props;
mod reopen;
mod support;
mod throughput;
