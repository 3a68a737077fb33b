//! Native classes: Web API classes whose constructor, methods and accessors are Rust callbacks
//! and whose state lives in V8 internal fields of each instance.
//!
//! Why native: a class written in JavaScript runs isobar's own JS on every request, and in an
//! isolate that serves one request in a thousand that JS is always cold (interpreted, with
//! uninitialised inline caches, touching many heap objects). A native method is the same machine
//! code in every isolate and keeps its state in a fixed number of fields, so a request to a cold
//! tenant costs little more than one to a warm one. workerd does the same in C++.
//!
//! Layout of an instance: internal field 0 holds the class's brand (its [`ClassId`] as a small
//! integer); the other fields are the class's own, as V8 values (strings, numbers, objects), so
//! V8's heap limit counts them and the garbage collector frees them with no finalizer. Scripts
//! cannot read or write internal fields.
//!
//! The templates are made once, into the startup snapshot, and recorded as isolate data at the
//! index of their [`ClassId`]; every isolate takes them back into a [`Classes`] slot.

use super::{JsError, Scope};

/// The native classes, in the order their templates are recorded in the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ClassId {
    Headers = 0,
    Request = 1,
    Response = 2,
    ExecutionContext = 3,
    BodySource = 4,
}

impl ClassId {
    pub const ALL: &'static [ClassId] =
        &[ClassId::Headers, ClassId::Request, ClassId::Response, ClassId::ExecutionContext, ClassId::BodySource];

    /// The brand stored in field 0 (distinct from 0 so an uninitialised field never matches).
    fn brand(self) -> i32 {
        self as i32 + 0x1500
    }
}

/// Index of the brand among an instance's internal fields.
pub const BRAND_FIELD: usize = 0;

/// How a class is made.
pub struct ClassDecl {
    pub id: ClassId,
    pub name: &'static str,
    /// Internal fields, the brand included.
    pub fields: usize,
    /// `None`: the constructor throws "Illegal constructor" (instances come from isobar only).
    pub constructor: Option<v8::FunctionCallback>,
    /// The constructor's `length`.
    pub length: i32,
    /// Methods on the prototype: (name, callback, length).
    pub methods: Vec<(&'static str, v8::FunctionCallback, i32)>,
    /// Accessors on the prototype: (name, getter, setter).
    pub accessors: Vec<(&'static str, v8::FunctionCallback, Option<v8::FunctionCallback>)>,
    /// Methods on the constructor: (name, callback, length).
    pub statics: Vec<(&'static str, v8::FunctionCallback, i32)>,
    /// Whether `obj[Symbol.iterator]` is the method named `entries`.
    pub iterable: bool,
}

impl ClassDecl {
    pub fn new(id: ClassId, name: &'static str, fields: usize) -> ClassDecl {
        ClassDecl {
            id,
            name,
            fields,
            constructor: None,
            length: 0,
            methods: Vec::new(),
            accessors: Vec::new(),
            statics: Vec::new(),
            iterable: false,
        }
    }

    /// Every native function of the class, for the snapshot's external references.
    pub fn callbacks(&self) -> impl Iterator<Item = v8::FunctionCallback> + '_ {
        self.constructor
            .into_iter()
            .chain(self.methods.iter().map(|m| m.1))
            .chain(self.accessors.iter().flat_map(|a| std::iter::once(a.1).chain(a.2)))
            .chain(self.statics.iter().map(|s| s.1))
            .chain(std::iter::once(illegal_constructor_callback()))
    }

    /// Makes the class's template (into the snapshot being built).
    pub fn template<'s>(&self, scope: &mut Scope<'s, '_>) -> Result<v8::Local<'s, v8::FunctionTemplate>, String> {
        let callback = self.constructor.unwrap_or_else(illegal_constructor_callback);
        let template = v8::FunctionTemplate::builder_raw(callback).length(self.length).build(scope);
        let class_name = v8::String::new(scope, self.name).ok_or("class name")?;
        template.set_class_name(class_name);
        template.instance_template(scope).set_internal_field_count(self.fields);
        let signature = v8::Signature::new(scope, template);
        let prototype = template.prototype_template(scope);
        for (name, callback, length) in &self.methods {
            let method = v8::FunctionTemplate::builder_raw(*callback)
                .length(*length)
                .signature(signature)
                .constructor_behavior(v8::ConstructorBehavior::Throw)
                .build(scope);
            let key = v8::String::new(scope, name).ok_or("method name")?;
            method.set_class_name(key);
            prototype.set_with_attr(key.into(), method.into(), v8::PropertyAttribute::DONT_ENUM);
        }
        if self.iterable {
            let entries = self.methods.iter().find(|m| m.0 == "entries").ok_or("an iterable class needs entries")?;
            let method = v8::FunctionTemplate::builder_raw(entries.1)
                .signature(signature)
                .constructor_behavior(v8::ConstructorBehavior::Throw)
                .build(scope);
            let key = v8::Symbol::get_iterator(scope);
            prototype.set_with_attr(key.into(), method.into(), v8::PropertyAttribute::DONT_ENUM);
        }
        for (name, getter, setter) in &self.accessors {
            let get = v8::FunctionTemplate::builder_raw(*getter)
                .signature(signature)
                .constructor_behavior(v8::ConstructorBehavior::Throw)
                .build(scope);
            let set = setter.map(|setter| {
                v8::FunctionTemplate::builder_raw(setter)
                    .length(1)
                    .signature(signature)
                    .constructor_behavior(v8::ConstructorBehavior::Throw)
                    .build(scope)
            });
            let key = v8::String::new(scope, name).ok_or("accessor name")?;
            prototype.set_accessor_property(key.into(), Some(get), set, v8::PropertyAttribute::DONT_ENUM);
        }
        for (name, callback, length) in &self.statics {
            let function = v8::FunctionTemplate::builder_raw(*callback)
                .length(*length)
                .constructor_behavior(v8::ConstructorBehavior::Throw)
                .build(scope);
            let key = v8::String::new(scope, name).ok_or("static name")?;
            template.set_with_attr(key.into(), function.into(), v8::PropertyAttribute::DONT_ENUM);
        }
        let tag = v8::Symbol::get_to_string_tag(scope);
        prototype.set_with_attr(
            tag.into(),
            class_name.into(),
            v8::PropertyAttribute::READ_ONLY | v8::PropertyAttribute::DONT_ENUM,
        );
        Ok(template)
    }
}

fn illegal_constructor_callback() -> v8::FunctionCallback {
    v8::MapFnTo::map_fn_to(illegal_constructor)
}

fn illegal_constructor<'s>(
    scope: &mut Scope<'s, '_>,
    _args: v8::FunctionCallbackArguments<'s>,
    rv: v8::ReturnValue<'s, v8::Value>,
) {
    super::guard(scope, "illegal_constructor", rv, |_| Err::<(), _>(JsError::type_error("Illegal constructor")));
}

/// One isolate's class templates, by [`ClassId`] (an isolate slot): each class's
/// FunctionTemplate and its instance template, kept so that making an instance asks V8 for
/// neither (`FunctionTemplate::InstanceTemplate` is a lookup in cold memory when the isolate
/// serves one request in a thousand).
pub struct Classes {
    templates: Vec<v8::Global<v8::FunctionTemplate>>,
    instances: Vec<v8::Global<v8::ObjectTemplate>>,
}

impl Classes {
    /// The classes of a new isolate, from the templates the snapshot recorded (in [`ClassId`] order).
    pub fn new(scope: &mut Scope, templates: Vec<v8::Global<v8::FunctionTemplate>>) -> Classes {
        let instances = templates
            .iter()
            .map(|template| {
                let template = v8::Local::new(scope, template);
                let instance = template.instance_template(scope);
                v8::Global::new(scope, instance)
            })
            .collect();
        Classes { templates, instances }
    }
}

/// The template of `id` in this isolate.
pub fn template<'s>(scope: &mut Scope<'s, '_>, id: ClassId) -> Result<v8::Local<'s, v8::FunctionTemplate>, JsError> {
    // A Local straight from the slot's Global: cloning the Global would create and destroy a
    // global handle per call.
    let classes = scope.get_slot::<Classes>().ok_or_else(no_classes)?;
    let global = classes.templates.get(id as usize).ok_or_else(no_classes)?;
    Ok(v8::Local::new(scope, global))
}

/// A new instance of `id` made by isobar (no constructor runs), with its brand set.
pub fn new_instance<'s>(scope: &mut Scope<'s, '_>, id: ClassId) -> Result<v8::Local<'s, v8::Object>, JsError> {
    let classes = scope.get_slot::<Classes>().ok_or_else(no_classes)?;
    let global = classes.instances.get(id as usize).ok_or_else(no_classes)?;
    let template = v8::Local::new(scope, global);
    let object = template.new_instance(scope).ok_or(JsError::Pending)?;
    set_brand(scope, object, id);
    Ok(object)
}

fn no_classes() -> JsError {
    JsError::type_error("isobar: this isolate has no native classes")
}

/// Marks `object` (made from `id`'s template, e.g. `this` in its constructor) as an instance.
pub fn set_brand(scope: &mut Scope, object: v8::Local<v8::Object>, id: ClassId) {
    let brand = v8::Integer::new(scope, id.brand());
    object.set_internal_field(BRAND_FIELD, brand.into());
}

/// Whether `value` is an initialised instance of `id` (or of a JS subclass of it).
pub fn is_instance(scope: &mut Scope, value: v8::Local<v8::Value>, id: ClassId) -> bool {
    let Ok(object) = v8::Local::<v8::Object>::try_from(value) else { return false };
    brand_of(scope, object) == Some(id.brand())
}

/// The brand in field 0, if `object` has internal fields and the first holds a small integer.
/// (Objects V8 itself makes with embedder fields, such as typed arrays, hold zero there, which
/// is never a brand.)
fn brand_of(scope: &mut Scope, object: v8::Local<v8::Object>) -> Option<i32> {
    let field = object.get_internal_field(scope, BRAND_FIELD)?;
    let value: v8::Local<v8::Value> = field.try_into().ok()?;
    if !value.is_int32() {
        return None;
    }
    v8::Local::<v8::Int32>::try_from(value).ok().map(|i| i.value())
}

/// `value` as an initialised instance of `id`, or the TypeError Web IDL throws.
pub fn unwrap<'s>(
    scope: &mut Scope,
    value: v8::Local<'s, v8::Value>,
    id: ClassId,
    what: &str,
) -> Result<v8::Local<'s, v8::Object>, JsError> {
    match v8::Local::<v8::Object>::try_from(value) {
        Ok(object) if brand_of(scope, object) == Some(id.brand()) => Ok(object),
        _ => Err(JsError::type_error(format!("{what}: Illegal invocation"))),
    }
}

/// Internal field `index` of an instance, as a value (undefined if unset).
pub fn field<'s>(scope: &mut Scope<'s, '_>, object: v8::Local<v8::Object>, index: usize) -> v8::Local<'s, v8::Value> {
    object
        .get_internal_field(scope, index)
        .and_then(|data| v8::Local::<v8::Value>::try_from(data).ok())
        .unwrap_or_else(|| v8::undefined(scope).into())
}

/// Sets internal field `index` of an instance.
pub fn set_field(object: v8::Local<v8::Object>, index: usize, value: v8::Local<v8::Value>) {
    object.set_internal_field(index, value.into());
}
