//! Tests of the engine through its public operations: published known answers, interop with
//! OpenSSL-made keys, round trips through every format, every error the spec names, and
//! proptests that feed arbitrary bytes to every import.

mod error_paths;
mod hostile_input;
mod interop;
mod known_answers;
mod round_trips;
