//! Compile-fail and compile-pass cases of `#[derive(ShmSafe)]`, checked with trybuild.
//!
//! Each `tests/ui/<case>.rs` is one rejected shape; its `.stderr` was generated with
//! `TRYBUILD=overwrite` and reviewed: the span must point at the offending field or attribute
//! and the message must say the fix. `tests/ui/pass/` holds shapes that must be accepted.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
