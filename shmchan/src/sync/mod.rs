//! Cross-process synchronisation: the sequence lock, the robust writer lock and fcntl record
//! locks.
