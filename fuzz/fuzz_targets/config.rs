//! Fuzzes `caracal_config::Config::parse` on arbitrary text (parsing touches no file); asserts an accepted configuration keeps the documented bounds and resolves every path against the file's directory.
#![no_main]

use std::path::Path;
use std::time::Duration;

use caracal_config::Config;
use libfuzzer_sys::fuzz_target;

/// Never read or written: `parse` only uses it to resolve relative paths.
const FILE: &str = "/tmp/fuzz/config.toml";
const DIR: &str = "/tmp/fuzz";

// Input: config.toml text.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text, Path::new(FILE)) {
        Ok(config) => config,
        Err(e) => {
            // The error names the file.
            assert!(e.to_string().contains(FILE), "{e}");
            return;
        }
    };
    let l = &config.limits;
    assert!(l.max_header_bytes >= 1024 && l.max_connections > 0);
    for timeout in [
        l.header_read_timeout,
        l.idle_timeout,
        l.upstream_connect_timeout,
        l.upstream_response_timeout,
    ] {
        assert!(timeout > Duration::ZERO);
    }
    assert!(config.clock_skew <= Duration::from_secs(300));
    assert!(!config.server_names.is_empty());
    assert_eq!(config.dir, Path::new(DIR));
    assert_eq!(config.log_file, Path::new(DIR).join("logs/gateway.log"));
    assert_eq!(config.pid_file, Path::new(DIR).join("run/gateway.pid"));
    // Relative paths are relative to the file's directory.
    let paths = [
        &config.database,
        &config.ca_cert,
        &config.ca_key,
        &config.server_cert,
        &config.server_key,
        &config.keyring,
    ];
    for p in paths.into_iter().chain(config.upstream_ca_file.as_ref()) {
        assert!(p.is_absolute(), "{p:?} is not resolved");
    }
});
