//! The config file loader of `binfmt apply` (`/etc/binfmt/config.toml`, root's input)
//! on arbitrary text: no panic, and a config it accepts keeps its promises: at least
//! one architecture, none of them the machine's own, absolute paths, flags that
//! encode.

#![no_main]

use binfmt::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(config) = Config::parse(text) else {
        return;
    };
    let install = &config.install;
    assert!(!install.emulators.is_empty(), "{text:?}");
    assert!(
        install.emulators.iter().all(|e| !e.arch().is_native()),
        "{text:?}"
    );
    assert!(config.mount.is_absolute(), "{text:?}");
    assert!(
        install.options.interpreter_dir.dir().is_absolute(),
        "{text:?}"
    );
    // The flags it accepted are flags the command line accepts, written back.
    let flags = install.options.flags;
    assert_eq!(
        flags.to_string().parse::<binfmt_misc::Flags>().ok(),
        Some(flags)
    );
});
