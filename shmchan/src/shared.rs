//! `Shared<T, L>`: a value in a segment paired with a lock.
