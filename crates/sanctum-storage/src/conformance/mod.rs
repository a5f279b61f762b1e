//! The golden contract suite.
