//! `structuredClone()` and MessageChannel/MessagePort (`clone.js`): the HTML standard's
//! structured serialisation, done by V8's own ValueSerializer and ValueDeserializer (the
//! serialiser Chrome, Node, Deno and workerd use), with isobar's platform objects as host objects.
//!
//! - Values V8 cannot clone (functions, symbols, WeakMaps, ...) make V8 call
//!   [`v8::ValueSerializerImpl::throw_data_clone_error`]: a `DataCloneError` DOMException.
//! - isobar's platform objects are classes written in JS (Blob, File, FormData, MessagePort,
//!   URL, ...), which V8 would otherwise copy as plain objects with none of their private state.
//!   clone.js passes the prototypes of those classes; an object whose prototype chain (a few
//!   levels, no proxies) reaches one of them, or any native-class instance (Request, Response,
//!   Headers), is a host object. Its JS hook makes the clone at once (a Blob's clone shares its
//!   immutable bytes) or throws the DataCloneError for a class that is not serializable; the
//!   serialised data holds [`HOST_OBJECT_TAG`] and the clone's index, and the clones travel
//!   beside the data, like transferred buffers. They are made while serialising because V8 runs
//!   no JavaScript while it deserialises (it aborts the process if an embedder tries).
//! - Transferred ArrayBuffers are detached once serialisation succeeded; their memory moves to
//!   new ArrayBuffers, which the deserialiser puts in place (no copy).
//! - The serialised form is bounded ([`CLONE_BYTES_MAX`]). V8 grows its buffer in Rust memory
//!   while it writes, which the heap limit does not see; what it writes is at most a small
//!   multiple of what the isolate already holds (its heap and ArrayBuffers, both limited), and
//!   a result above the cap is refused before anything is built from it.
//!
//! This module must not keep any V8 handle past the op that made it.

use std::cell::RefCell;
use std::rc::Rc;

use v8::{ValueDeserializerHelper as _, ValueSerializerHelper as _};

use crate::bridge::{JsError, OpDecl, args};
use crate::{op, op_decl};

pub const JS: (&str, &str) = ("isobar:clone", include_str!("clone.js"));

/// The largest serialised value isobar accepts (the same cap as one body or one op buffer).
pub const CLONE_BYTES_MAX: usize = 128 << 20;

/// Written before a host object's index ("isob"), checked when it is read back.
pub const HOST_OBJECT_TAG: u32 = 0x6973_6f62;

/// How far up an object's prototype chain isobar looks for one of its classes (a tenant's
/// subclass of Blob is one level, a subclass of that two).
const PROTOTYPE_DEPTH_MAX: usize = 4;

pub fn ops() -> Vec<OpDecl> {
    vec![op_decl!("cloneSerialize", clone_serialize), op_decl!("cloneDeserialize", clone_deserialize)]
}

fn data_clone_error(message: impl Into<std::borrow::Cow<'static, str>>) -> JsError {
    JsError::dom("DataCloneError", message)
}

/// The serialiser's delegate: what is a host object, and how one is written.
struct Serializer<'h> {
    /// Handles made once, in the op's scope, which outlives the serialiser: V8 asks about every
    /// object in the value, and making handles per question would grow that scope with it.
    host_prototypes: Vec<v8::Local<'h, v8::Value>>,
    host_clone: v8::Local<'h, v8::Function>,
    /// The clones `host_clone` made, in the order their indices were written (shared with the
    /// op, which hands them to JS once serialisation is done).
    clones: Rc<RefCell<Vec<v8::Global<v8::Object>>>>,
}

impl v8::ValueSerializerImpl for Serializer<'_> {
    fn throw_data_clone_error<'s>(&self, scope: &mut v8::PinScope<'s, '_>, message: v8::Local<'s, v8::String>) {
        let message = message.to_rust_string_lossy(scope);
        data_clone_error(message).throw(scope);
    }

    fn has_custom_host_object(&self, _isolate: &v8::Isolate) -> bool {
        true
    }

    fn is_host_object<'s>(&self, scope: &mut v8::PinScope<'s, '_>, object: v8::Local<'s, v8::Object>) -> Option<bool> {
        if object.internal_field_count() > 0 {
            return Some(true);
        }
        // The prototype handles made here go with this scope.
        v8::scope!(let scope, scope);
        let mut current = object;
        for _ in 0..PROTOTYPE_DEPTH_MAX {
            let Some(prototype) = current.get_prototype(scope) else { return Some(false) };
            if prototype.is_null_or_undefined() || prototype.is_proxy() {
                return Some(false);
            }
            if self.host_prototypes.contains(&prototype) {
                return Some(true);
            }
            let Ok(next) = v8::Local::<v8::Object>::try_from(prototype) else { return Some(false) };
            current = next;
        }
        Some(false)
    }

    fn write_host_object<'s>(
        &self,
        scope: &mut v8::PinScope<'s, '_>,
        object: v8::Local<'s, v8::Object>,
        serializer: &dyn v8::ValueSerializerHelper,
    ) -> Option<bool> {
        if object.internal_field_count() > 0 {
            let name = object.get_constructor_name().to_rust_string_lossy(scope);
            data_clone_error(format!("{name} object could not be cloned.")).throw(scope);
            return None;
        }
        let hook = self.host_clone;
        let undefined = v8::undefined(scope).into();
        // Throws the DataCloneError itself for a class that is not serializable.
        let clone = hook.call(scope, undefined, &[object.into()])?;
        let Ok(clone) = v8::Local::<v8::Object>::try_from(clone) else {
            data_clone_error("isobar: a host object's clone is not an object").throw(scope);
            return None;
        };
        let mut clones = self.clones.borrow_mut();
        let index = u32::try_from(clones.len()).ok()?;
        clones.push(v8::Global::new(scope, clone));
        serializer.write_uint32(HOST_OBJECT_TAG);
        serializer.write_uint32(index);
        Some(true)
    }

    fn get_wasm_module_transfer_id(
        &self,
        scope: &mut v8::PinScope<'_, '_>,
        _module: v8::Local<v8::WasmModuleObject>,
    ) -> Option<u32> {
        data_clone_error("WebAssembly.Module objects could not be cloned.").throw(scope);
        None
    }
}

/// The deserialiser's delegate: puts the clones made while serialising in place. It must not
/// run JavaScript (V8 forbids it here): a damaged index is reported by returning nothing, and V8
/// throws its own deserialisation error.
struct Deserializer {
    clones: Vec<v8::Global<v8::Object>>,
}

impl v8::ValueDeserializerImpl for Deserializer {
    fn read_host_object<'s>(
        &self,
        scope: &mut v8::PinScope<'s, '_>,
        deserializer: &dyn v8::ValueDeserializerHelper,
    ) -> Option<v8::Local<'s, v8::Object>> {
        let (mut tag, mut index) = (0, 0);
        if !deserializer.read_uint32(&mut tag) || tag != HOST_OBJECT_TAG || !deserializer.read_uint32(&mut index) {
            return None;
        }
        let clone = self.clones.get(usize::try_from(index).ok()?)?;
        Some(v8::Local::new(scope, clone))
    }
}

fn function_arg<'s>(value: v8::Local<'s, v8::Value>, what: &str) -> Result<v8::Local<'s, v8::Function>, JsError> {
    v8::Local::<v8::Function>::try_from(value).map_err(|_| JsError::type_error(format!("{what}: expected a function")))
}

fn array_arg<'s>(value: v8::Local<'s, v8::Value>, what: &str) -> Result<v8::Local<'s, v8::Array>, JsError> {
    v8::Local::<v8::Array>::try_from(value).map_err(|_| JsError::type_error(format!("{what}: expected an array")))
}

// cloneSerialize(value, transfer: ArrayBuffer[], hostPrototypes: object[], hostClone: function)
//   -> [data: Uint8Array, transferred: ArrayBuffer[], clones: object[]]
op!(fn clone_serialize(scope, args) {
    let value = args.get(0);
    let transfer = array_arg(args.get(1), "cloneSerialize")?;
    let prototypes = array_arg(args.get(2), "cloneSerialize")?;
    let host_clone = function_arg(args.get(3), "cloneSerialize")?;

    let mut buffers = Vec::with_capacity(transfer.length() as usize);
    for i in 0..transfer.length() {
        let item = transfer.get_index(scope, i).ok_or(JsError::Pending)?;
        let Ok(buffer) = v8::Local::<v8::ArrayBuffer>::try_from(item) else {
            return Err(data_clone_error(format!("transfer list item {i} is not an ArrayBuffer")));
        };
        if buffer.was_detached() {
            return Err(data_clone_error(format!("transfer list item {i} is an ArrayBuffer that is already detached")));
        }
        if !buffer.is_detachable() {
            return Err(data_clone_error(format!("transfer list item {i} is an ArrayBuffer that cannot be detached")));
        }
        if buffers.contains(&buffer) {
            return Err(data_clone_error(format!("transfer list item {i} appears more than once")));
        }
        buffers.push(buffer);
    }
    let mut host_prototypes = Vec::with_capacity(prototypes.length() as usize);
    for i in 0..prototypes.length() {
        let prototype = prototypes.get_index(scope, i).ok_or(JsError::Pending)?;
        host_prototypes.push(prototype);
    }
    let clones = Rc::new(RefCell::new(Vec::new()));
    let delegate = Serializer { host_prototypes, host_clone, clones: clones.clone() };
    let serializer = v8::ValueSerializer::new(scope, Box::new(delegate));
    for (id, buffer) in buffers.iter().enumerate() {
        serializer.transfer_array_buffer(id as u32, *buffer);
    }
    serializer.write_header();
    let context = scope.get_current_context();
    // Nothing: V8 or a hook threw (a DataCloneError, or termination), and that is pending.
    if serializer.write_value(context, value) != Some(true) {
        return Err(JsError::Pending);
    }
    let data = serializer.release();
    drop(serializer);
    if data.len() > CLONE_BYTES_MAX {
        return Err(data_clone_error(format!(
            "the value is too large to clone ({} bytes serialized; the limit is {CLONE_BYTES_MAX})",
            data.len()
        )));
    }
    let mut moved: Vec<v8::Local<v8::Value>> = Vec::with_capacity(buffers.len());
    for buffer in buffers {
        let store = buffer.get_backing_store();
        if buffer.detach(None) != Some(true) {
            return Err(JsError::Pending);
        }
        moved.push(v8::ArrayBuffer::with_backing_store(scope, &store).into());
    }
    let data = args::new_u8_array(scope, data)?;
    let moved = v8::Array::new_with_elements(scope, &moved);
    let clones: Vec<v8::Local<v8::Value>> = clones.borrow().iter().map(|c| v8::Local::new(scope, c).into()).collect();
    let clones = v8::Array::new_with_elements(scope, &clones);
    Ok(v8::Array::new_with_elements(scope, &[data.into(), moved.into(), clones.into()]))
});

// cloneDeserialize(data: Uint8Array, transferred: ArrayBuffer[], clones: object[]) -> value
op!(fn clone_deserialize(scope, args) {
    let data = args::bytes(args.get(0), CLONE_BYTES_MAX, "cloneDeserialize")?;
    let transferred = array_arg(args.get(1), "cloneDeserialize")?;
    let clone_list = array_arg(args.get(2), "cloneDeserialize")?;
    let mut buffers = Vec::with_capacity(transferred.length() as usize);
    for i in 0..transferred.length() {
        let item = transferred.get_index(scope, i).ok_or(JsError::Pending)?;
        let buffer = v8::Local::<v8::ArrayBuffer>::try_from(item)
            .map_err(|_| JsError::type_error("cloneDeserialize: transferred items must be ArrayBuffers"))?;
        buffers.push(buffer);
    }
    // Read out now: nothing may run JavaScript once the deserialiser has started.
    let mut clones = Vec::with_capacity(clone_list.length() as usize);
    for i in 0..clone_list.length() {
        let item = clone_list.get_index(scope, i).ok_or(JsError::Pending)?;
        let object = v8::Local::<v8::Object>::try_from(item)
            .map_err(|_| JsError::type_error("cloneDeserialize: clones must be objects"))?;
        clones.push(v8::Global::new(scope, object));
    }
    let deserializer = v8::ValueDeserializer::new(scope, Box::new(Deserializer { clones }), &data);
    let context = scope.get_current_context();
    // V8 throws its own deserialisation error whenever it fails to read.
    if deserializer.read_header(context) != Some(true) {
        return Err(JsError::Pending);
    }
    for (id, buffer) in buffers.iter().enumerate() {
        deserializer.transfer_array_buffer(id as u32, *buffer);
    }
    deserializer.read_value(context).ok_or(JsError::Pending)
});

#[cfg(test)]
mod tests {
    #[test]
    fn structured_clone_behaves_as_html_says() {
        crate::testing::api_test("clone/test.js", &crate::testing::Req::get("http://example.com/"));
    }

    #[test]
    fn message_channel_delivers_asynchronously() {
        crate::testing::api_test("clone/test_messaging.js", &crate::testing::Req::get("http://example.com/"));
    }
}
