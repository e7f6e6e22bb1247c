//! Types compiled separately from the tests that compare their fingerprints.
