//! placeholder
pub fn hello() -> String {
    let platform = v8::new_single_threaded_default_platform(false).make_shared();
    v8::V8::set_flags_from_string("--single-threaded");
    v8::V8::initialize_platform(platform);
    v8::V8::initialize();
    let mut isolate = v8::Isolate::new(Default::default());
    v8::scope!(let hs, &mut isolate);
    let context = v8::Context::new(hs, Default::default());
    let scope = &mut v8::ContextScope::new(hs, context);
    let code = v8::String::new(scope, "typeof WebAssembly").unwrap();
    let out = v8::Script::compile(scope, code, None).unwrap().run(scope).unwrap();
    out.to_rust_string_lossy(scope)
}
