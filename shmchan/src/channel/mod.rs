//! Typed single-producer single-consumer channels between processes.
