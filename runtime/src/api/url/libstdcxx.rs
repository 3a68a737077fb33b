//! The five symbols of GNU libstdc++ that ada's object code refers to, so that the binary does
//! not load `libstdc++.so` for them.
//!
//! ada is the only C++ in the binary built against the system's C++ library (V8 brings its own
//! libc++, in its own namespace, with its own `operator new` and exception runtime, which ada's
//! calls already bind to). What ada still took from `libstdc++.so.6` was the constructor and
//! destructor of `std::ios_base::Init` (the static object every translation unit that includes
//! `<iostream>` holds; ada never writes to a standard stream) and three helpers that throw when a
//! `std::string` is misused. Loading the library and relocating it cost every start ~0.4 ms of
//! CPU and ~50 page faults, most of a C++ "hello world"'s start-up; see BENCHMARKS.md. With the
//! five defined here, nothing in the binary refers to libstdc++ any more, and the linker (rustc
//! links with `--as-needed`) leaves `libstdc++.so` out although cc still names it for ada. An
//! e2e test (`skeleton::the_binary_loads_no_cxx_library`) holds that: a new C++ dependency that
//! needs more of libstdc++ would bring the library back, and fail it.
//!
//! The throw helpers stop the process with their message. That is what the exception did
//! before: ada's C API functions are `noexcept`, so it reached `std::terminate`. They mean a
//! bug in ada (a string built from a null pointer, a position past a string's end, a string
//! longer than memory), not input it rejects: invalid URLs are ordinary failures of its parser.

use std::ffi::{CStr, c_char, c_void};

/// `std::ios_base::Init::Init()`: nothing to set up, no standard stream is ever used.
#[unsafe(export_name = "_ZNSt8ios_base4InitC1Ev")]
extern "C" fn ios_base_init_new(_this: *mut c_void) {}

/// `std::ios_base::Init::~Init()`.
#[unsafe(export_name = "_ZNSt8ios_base4InitD1Ev")]
extern "C" fn ios_base_init_drop(_this: *mut c_void) {}

/// `std::__throw_logic_error(const char*)`.
#[unsafe(export_name = "_ZSt19__throw_logic_errorPKc")]
extern "C" fn throw_logic_error(what: *const c_char) -> ! {
    die("logic_error", what)
}

/// `std::__throw_length_error(const char*)`.
#[unsafe(export_name = "_ZSt20__throw_length_errorPKc")]
extern "C" fn throw_length_error(what: *const c_char) -> ! {
    die("length_error", what)
}

/// `std::__throw_out_of_range_fmt(const char*, ...)`: the message is a format string whose
/// arguments (passed in registers, ignored here) fill its `%zu`s.
#[unsafe(export_name = "_ZSt24__throw_out_of_range_fmtPKcz")]
extern "C" fn throw_out_of_range_fmt(format: *const c_char) -> ! {
    die("out_of_range", format)
}

fn die(exception: &str, what: *const c_char) -> ! {
    let what = if what.is_null() {
        "(no message)".into()
    } else {
        // SAFETY: libstdc++'s callers pass a NUL-terminated string literal.
        unsafe { CStr::from_ptr(what) }.to_string_lossy()
    };
    eprintln!("isobar: the URL parser (ada) threw std::{exception}: {what}; stopping");
    std::process::abort()
}
