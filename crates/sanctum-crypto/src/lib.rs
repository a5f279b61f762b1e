//! The sanctum envelope format (work in progress).
#![forbid(unsafe_code)]
