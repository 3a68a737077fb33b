//! The Rust half of `crypto.DigestStream` (a Workers extension): the running hash of one stream,
//! kept in the isolate's `ResourceTable` between writes. `subtle.js` owns the stream itself (a
//! WritableStream subclass), validates chunks and frees the state when the stream closes, aborts,
//! is disposed, or is collected. This module must not hold more than a hash state per stream.

use isobar_crypto::{DigestStream, HashAlgorithm};

use super::subtle::thrown;
use crate::bridge::resources::Resource;
use crate::bridge::{self, JsError, OpDecl, args};
use crate::{op, op_decl};

pub fn ops() -> Vec<OpDecl> {
    vec![
        op_decl!("digestStreamNew", digest_stream_new),
        op_decl!("digestStreamWrite", digest_stream_write),
        op_decl!("digestStreamFinish", digest_stream_finish),
        op_decl!("digestStreamFree", digest_stream_free),
    ]
}

/// One stream's hash in progress.
struct DigestResource(DigestStream);

impl Resource for DigestResource {
    fn name(&self) -> &'static str {
        "DigestStream"
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<DigestStream>()
    }
}

/// What a write of anything but bytes or a string rejects with (workerd's words).
const CHUNK_ERROR: &str = "DigestStream is a byte stream but received an object of non-ArrayBuffer/ArrayBufferView/string type on its writable side.";

/// The longest algorithm name looked at; nothing longer names a digest.
const NAME_BYTES_MAX: usize = 64;

// digestStreamNew(name) -> id. An unknown name (SHA-*, MD5, any case) is a NotSupportedError.
op!(fn digest_stream_new(scope, args) {
    let name = args::string(&args, 0, "DigestStream")?;
    let name = if name.utf8_length(scope) > NAME_BYTES_MAX {
        String::from("(a name too long to be a digest)")
    } else {
        args::to_rust_string(scope, name, NAME_BYTES_MAX, "DigestStream")?
    };
    let hash = HashAlgorithm::from_name(&name).map_err(thrown)?;
    bridge::state(scope).borrow_mut().resources.add(DigestResource(DigestStream::new(hash)))
});

// digestStreamWrite(id, chunk) -> bytes hashed. A string chunk is hashed as V8 holds it encoded in
// UTF-8, lone surrogates as their three-byte (WTF-8) form, as workerd does unless the stream was
// made with `toWellFormed` (which subtle.js applies before the chunk gets here). Id 0 is a disposed
// stream: an empty chunk still succeeds there, as in workerd, and any other is an error.
op!(fn digest_stream_write(scope, args) {
    let id = args.get(0).uint32_value(scope).unwrap_or(0);
    let chunk = args.get(1);
    let bytes = if let Ok(text) = v8::Local::<v8::String>::try_from(chunk) {
        let length = text.utf8_length(scope);
        if length > args::STRING_BYTES_MAX {
            return Err(JsError::range_error(format!("DigestStream: a {length}-byte string chunk is too long")));
        }
        let mut bytes = vec![0u8; length];
        let written = text.write_utf8_v2(scope, &mut bytes, v8::WriteFlags::empty(), None);
        bytes.truncate(written);
        bytes
    } else if args::buffer_len(chunk).is_some() {
        args::bytes(chunk, args::BUFFER_BYTES_MAX, "DigestStream")?
    } else {
        return Err(JsError::type_error(CHUNK_ERROR));
    };
    if bytes.is_empty() {
        return Ok(0.0);
    }
    if id == 0 {
        return Err(JsError::dom("InvalidStateError", "The DigestStream was disposed."));
    }
    let state = bridge::state(scope);
    let mut state = state.borrow_mut();
    state.resources.get_mut::<DigestResource>(id, "DigestStream")?.0.update(&bytes);
    Ok(bytes.len() as f64)
});

// digestStreamFinish(id) -> ArrayBuffer (the state is freed).
op!(fn digest_stream_finish(scope, args) {
    let id = args.get(0).uint32_value(scope).unwrap_or(0);
    let resource = bridge::state(scope).borrow_mut().resources.take::<DigestResource>(id, "DigestStream")?;
    Ok(args::new_array_buffer(scope, resource.0.finish()))
});

op!(fn digest_stream_free(scope, args) {
    let id = args.get(0).uint32_value(scope).unwrap_or(0);
    bridge::state(scope).borrow_mut().resources.close(id);
    Ok(())
});
