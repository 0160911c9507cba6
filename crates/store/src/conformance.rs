//! The conformance suite every event store backend runs against itself.
