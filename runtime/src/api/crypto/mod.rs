//! `crypto`: random values from the kernel (getrandom through kernel-shim), UUIDs; the WebCrypto
//! glue lives beside this.

use crate::bridge::{JsError, OpDecl, args};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:crypto", include_str!("crypto.js"));

/// The most bytes one getRandomValues call fills (the Web Crypto limit).
const RANDOM_BYTES_MAX: usize = 65536;

pub fn ops() -> Vec<OpDecl> {
    vec![op_decl!("randomFill", random_fill), op_decl!("randomUuid", random_uuid)]
}

op!(fn random_fill(scope, args) {
    let Ok(view) = v8::Local::<v8::ArrayBufferView>::try_from(args.get(0)) else {
        return Err(JsError::type_error("getRandomValues: the argument must be an integer TypedArray"));
    };
    let len = view.byte_length();
    if len > RANDOM_BYTES_MAX {
        return Err(JsError::dom("QuotaExceededError", "getRandomValues: more than 65536 bytes requested"));
    }
    let mut bytes = vec![0u8; len];
    kernel_shim::random::fill(&mut bytes)
        .map_err(|_| JsError::dom("OperationError", "getRandomValues: the kernel's random source failed"))?;
    args::copy_into_view(scope, view, &bytes);
    Ok(())
});

op!(fn random_uuid(scope, args) {
    let _ = &args;
    let mut b = [0u8; 16];
    kernel_shim::random::fill(&mut b)
        .map_err(|_| JsError::dom("OperationError", "randomUUID: the kernel's random source failed"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let uuid = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    args::new_string(scope, &uuid)
});
