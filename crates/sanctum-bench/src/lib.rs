//! Benchmarks of sanctum-storage against the systems a user would pick instead, in one process
//! with rounds interleaved: `cargo bench -p sanctum-bench --bench peers`. The crate has no code
//! of its own; see `benches/peers.rs`.
