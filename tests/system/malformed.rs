//! Malformed input, systematically: random and mutated requests to every route,
//! raw malformed HTTP, and Raft frames that decode but no correct peer sends.
//! Every refusal is a 4xx with the JSON error envelope, the node keeps serving,
//! and a refused request changes nothing.

mod members;
mod raft_frames;
