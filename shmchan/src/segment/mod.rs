//! Where shared bytes live: anonymous mappings, System V segments and POSIX shared memory
//! objects, each starting with a validated header.
