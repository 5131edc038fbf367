#![forbid(unsafe_code)]
//! Test and benchmark tooling for the Caracal gateway.
//!
//! [`mock`] is a fake OpenAI/Anthropic provider that the gateway's
//! integration tests, the quick start and the benchmarks run against.
//! [`load`] is the closed-loop load generator behind `caracal-load` and the
//! scripts in `bench/`. [`faults`] is a TCP proxy that breaks the
//! network between a test and a server (Kafka, Redis, PostgreSQL) on cue.
//! [`broker`] starts a Kafka-protocol broker (tansu) per test.

pub mod broker;
pub mod faults;
pub mod load;
pub mod mock;
