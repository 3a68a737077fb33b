//! `console`: log lines written to the process log with the worker's name, each capped in size.

use crate::bridge::{JsError, OpDecl};
use crate::state::LogLevel;
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:console", include_str!("console.js"));

/// The most bytes of one log line kept; the rest is cut (and says so). A script logging a huge
/// string must not make isobar copy it, nor flood the log.
pub const LOG_LINE_BYTES_MAX: usize = 16 << 10;

pub fn ops() -> Vec<OpDecl> {
    vec![op_decl!("print", print)]
}

/// The log levels as JS sees them (`internals.consts.logLevel`).
pub const LOG_LEVELS: &[(&str, u32)] = &[("debug", 0), ("log", 1), ("info", 1), ("warn", 2), ("error", 3)];

fn level(n: u32) -> LogLevel {
    match n {
        0 => LogLevel::Debug,
        2 => LogLevel::Warn,
        3 => LogLevel::Error,
        _ => LogLevel::Info,
    }
}

op!(fn print(scope, args) {
    let level = level(args.get(0).uint32_value(scope).unwrap_or(1));
    let message = args.get(1);
    let Ok(message) = v8::Local::<v8::String>::try_from(message) else {
        return Err(JsError::type_error("print: the message must be a string"));
    };
    // Only the first LOG_LINE_BYTES_MAX bytes are ever copied out of V8.
    let mut buffer = vec![0u8; LOG_LINE_BYTES_MAX];
    let written = message.write_utf8_v2(scope, &mut buffer, v8::WriteFlags::kReplaceInvalidUtf8, None);
    buffer.truncate(written);
    let mut line = String::from_utf8(buffer).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    if message.utf8_length(scope) > written {
        line.push_str(" [... log line cut at 16 KiB]");
    }
    crate::bridge::state(scope).borrow_mut().log(level, &line);
    Ok(())
});
