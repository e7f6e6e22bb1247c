//! `shmchan-suite`: the examples and downstream-user tests of shmchan. It has no API of its own.
