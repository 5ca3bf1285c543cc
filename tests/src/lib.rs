//! End-to-end tests of the siemstress binaries.
