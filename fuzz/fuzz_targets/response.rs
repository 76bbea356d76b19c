#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rgate_fuzz::check_response(data));
