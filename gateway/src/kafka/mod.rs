//! Ledger events through Kafka, the event sink of the distributed
//! deployment: the wire format of an event on the topic ([`schema`]) and
//! the durable local spool events wait in while the broker cannot take
//! them ([`spool`]).

pub mod schema;
pub mod spool;
