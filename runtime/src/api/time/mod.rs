//! The isolate's clock as scripts see it: `Date`, `performance`, and `Intl.DateTimeFormat`'s
//! implicit "now", all frozen while a request's code runs (the clock moves only between I/O
//! events; `state::Clock`).

use crate::bridge::{self, OpDecl};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:time", include_str!("time.js"));

pub fn ops() -> Vec<OpDecl> {
    vec![op_decl!("now", now), op_decl!("timeOrigin", time_origin)]
}

op!(fn now(scope, args) {
    let _ = &args;
    Ok(bridge::state(scope).borrow().clock.now_ms())
});

op!(fn time_origin(scope, args) {
    let _ = &args;
    Ok(bridge::state(scope).borrow().clock.origin_ms())
});
