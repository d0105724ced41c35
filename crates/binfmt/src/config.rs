//! The config file of `binfmt apply`, read by the systemd unit and the Kubernetes
//! DaemonSet: which architectures, which flags, where the emulators and the
//! binfmt_misc mount are. TOML:
//!
//! ```toml
//! # /etc/binfmt/config.toml
//! architectures = ["arm64", "riscv64"]   # or ["all"]: every foreign one
//! flags = "POCF"                          # optional, default POCF
//! interpreter_dir = "/var/lib/binfmt"     # optional, default /var/lib/binfmt
//! mount = "/proc/sys/fs/binfmt_misc"      # optional, default /proc/sys/fs/binfmt_misc
//! take_over = false                       # optional: as --take-over
//!
//! [emulators.riscv64]                     # optional: as --emulator, per architecture
//! path = "/usr/bin/qemu-riscv64-static"
//! sha256 = "…"                            # optional: refused unless the file has it
//! flags = "POCF"                          # optional: this entry's, default `flags`
//! ```
//!
//! Everything is checked when the file is read, before anything is written: unknown
//! keys (a misspelt `architecture` would otherwise be ignored), unknown architectures,
//! the machine's own architectures, bad flag letters and relative paths are refused,
//! each error naming the file, the key and the fix. A chosen emulator's file is
//! checked (and its probe run) when the config is applied, before the first write.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use binfmt_cli::DEFAULT_INTERPRETER_DIR;
use binfmt_misc::report::Fixable;
use binfmt_misc::{DEFAULT_MOUNT, Flags};
use interpreter_files::InterpreterDir;
use serde::Deserialize;

use crate::chosen::ChosenEmulator;
use crate::install::{self, Install};
use crate::outcome::{Context, Failure, Message};

/// The file as written; [`Config::load`] checks it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    architectures: Vec<String>,
    flags: Option<String>,
    interpreter_dir: Option<PathBuf>,
    mount: Option<PathBuf>,
    take_over: Option<bool>,
    emulators: Option<BTreeMap<String, EmulatorTable>>,
}

/// `[emulators.ARCH]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmulatorTable {
    path: PathBuf,
    sha256: Option<String>,
    flags: Option<String>,
}

/// A checked config.
#[derive(Debug)]
pub struct Config {
    /// What to register (never the machine's own architectures; `all` leaves out, by
    /// execution, what the machine runs natively, as `--install all` does), and how.
    pub install: Install,
    /// The binfmt_misc mount.
    pub mount: PathBuf,
}

/// A config that cannot be used, and why.
#[derive(Debug)]
pub struct ConfigError {
    path: PathBuf,
    error: Failure,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}", self.path.display())
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let error: &(dyn std::error::Error + 'static) = self.error.error();
        Some(error)
    }
}

impl Fixable for ConfigError {
    fn fix(&self) -> Option<String> {
        self.error.error().fix()
    }
}

/// `key`'s `error`: `key: error`.
fn at(key: impl Into<String>, error: impl Into<Failure>) -> Failure {
    Failure::from(Context {
        what: key.into(),
        error: error.into(),
    })
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            path: path.to_owned(),
            error: if error.kind() == std::io::ErrorKind::NotFound {
                Message::new(error.to_string())
                    .fix(
                        "write one (see `binfmt apply --help` or `man binfmt-apply`) or give \
                         another file with --config",
                    )
                    .into()
            } else {
                error.into()
            },
        })?;
        Config::parse(&text).map_err(|error| ConfigError {
            path: path.to_owned(),
            error,
        })
    }

    /// Checks the text of a config file.
    pub fn parse(text: &str) -> Result<Config, Failure> {
        // toml's message names the line, the column and the key.
        let file: ConfigFile = toml::from_str(text).map_err(|error| {
            let message = error.to_string();
            Message::new(message.trim_end().replace('\n', "\n  "))
        })?;

        if file.architectures.is_empty() {
            return Err(Message::new("architectures is empty")
                .fix("list some (`[\"arm64\", \"riscv64\"]`) or `[\"all\"]`")
                .into());
        }
        if let Some(item) = file.architectures.iter().find(|item| item.contains(',')) {
            return Err(at(
                "architectures",
                Message::new(format!("{item:?} holds a comma"))
                    .fix("give one architecture per string"),
            ));
        }
        let (selection, emulators) = install::parse_list(&file.architectures.join(","))
            .map_err(|error| at("architectures", error))?;

        let flags = match &file.flags {
            Some(letters) => letters
                .parse::<Flags>()
                .map_err(|error| at(format!("flags {letters:?}"), error))?,
            None => Flags::POCF,
        };
        let interpreter_dir = absolute(
            "interpreter_dir",
            file.interpreter_dir,
            DEFAULT_INTERPRETER_DIR,
        )?;
        let mount = absolute("mount", file.mount, DEFAULT_MOUNT)?;

        let options = install::Options {
            flags,
            interpreter_dir: InterpreterDir::new(interpreter_dir),
            in_memory: false,
            take_over: file.take_over.unwrap_or(false),
        };
        let mut chosen = Vec::new();
        for (arch, table) in file.emulators.unwrap_or_default() {
            let key = format!("emulators.{arch}");
            let flags = match &table.flags {
                Some(letters) => Some(
                    letters
                        .parse::<Flags>()
                        .map_err(|error| at(format!("{key}.flags {letters:?}"), error))?,
                ),
                None => None,
            };
            chosen.push(
                ChosenEmulator::new(&arch, table.path, table.sha256.as_deref(), flags)
                    .map_err(|error| at(&key, error))?,
            );
        }
        let install = Install::new(selection, emulators, options)
            .map_err(|error| at("interpreter_dir", error))?
            .with_chosen(chosen)
            .map_err(|error| at("emulators", error))?;
        Ok(Config { install, mount })
    }
}

/// The path given for `key`, or `default`; it must be absolute (a unit or a pod has
/// no meaningful working directory).
fn absolute(key: &str, path: Option<PathBuf>, default: &str) -> Result<PathBuf, Message> {
    let path = path.unwrap_or_else(|| PathBuf::from(default));
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(Message::new(format!(
            "{key} {:?} is relative",
            path.display().to_string()
        ))
        .fix("give an absolute path"))
    }
}

#[cfg(test)]
mod tests {
    use qemu_catalog::{Arch, Emulator};

    use super::*;

    fn refused(text: &str) -> String {
        match Config::parse(text) {
            Ok(config) => panic!("accepted {text:?}: {config:?}"),
            Err(failure) => failure.to_string(),
        }
    }

    #[test]
    fn a_full_config_is_read() {
        let config = Config::parse(
            r#"
            architectures = ["arm64", "linux/riscv64"]
            flags = "PF"
            interpreter_dir = "/opt/binfmt"
            mount = "/host/binfmt_misc"
            "#,
        )
        .unwrap();
        let arches: Vec<Arch> = config
            .install
            .emulators
            .iter()
            .map(Emulator::arch)
            .collect();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arches, [Arch::Arm64, Arch::Riscv64]);
        }
        assert_eq!(config.install.options.flags, "PF".parse().unwrap());
        assert_eq!(
            config.install.options.interpreter_dir.dir(),
            Path::new("/opt/binfmt")
        );
        assert_eq!(config.mount, Path::new("/host/binfmt_misc"));
    }

    #[test]
    fn defaults_match_the_command_line() {
        let config = Config::parse(r#"architectures = ["all"]"#).unwrap();
        assert_eq!(config.install.emulators.len(), Emulator::all().len());
        assert_eq!(config.install.options.flags, Flags::POCF);
        assert_eq!(
            config.install.options.interpreter_dir.dir(),
            Path::new(DEFAULT_INTERPRETER_DIR)
        );
        assert_eq!(config.mount, Path::new(DEFAULT_MOUNT));
    }

    #[test]
    fn bad_configs_are_refused_with_the_key_and_the_fix() {
        let message = refused(r#"architecture = ["arm64"]"#);
        assert!(
            message.contains("unknown field `architecture`"),
            "{message}"
        );
        assert!(message.contains("line 1"), "{message}");
        assert!(refused("flags = \"POCF\"").contains("missing field `architectures`"));
        assert!(refused("architectures = []").contains("architectures is empty"));
        assert!(refused(r#"architectures = "arm64""#).contains("architectures"));
        assert!(refused(r#"architectures = ["arm64,riscv64"]"#).contains("one architecture per"));
        assert!(refused(r#"architectures = ["arm64", "bogus"]"#).contains("bogus"));
        let native = Arch::native()[0].to_string();
        let message = refused(&format!(r#"architectures = ["{native}"]"#));
        assert!(message.contains("own architecture"), "{message}");
        let message = refused("architectures = [\"arm64\"]\nflags = \"POX\"");
        assert!(message.starts_with("flags \"POX\""), "{message}");
        let message = refused("architectures = [\"arm64\"]\ninterpreter_dir = \"lib/binfmt\"");
        assert!(
            message.contains("interpreter_dir \"lib/binfmt\" is relative"),
            "{message}"
        );
        let message = refused("architectures = [\"arm64\"]\ninterpreter_dir = \"/a:b\"");
        assert!(message.starts_with("interpreter_dir: "), "{message}");
        assert!(refused("architectures = [\"arm64\"]\nmount = \"proc\"").contains("mount"));
        assert!(refused("architectures = [\"arm64\"").contains("line 1"));
    }

    #[test]
    fn emulators_and_take_over_are_read_and_checked() {
        let arch = Arch::ALL
            .into_iter()
            .find(|arch| !arch.is_native())
            .unwrap()
            .oci();
        let config = Config::parse(&format!(
            "architectures = [\"all\"]\ntake_over = true\n\
             [emulators.{arch}]\npath = \"/usr/bin/qemu-x-static\"\nsha256 = \"{}\"\n\
             flags = \"PF\"\n",
            "0".repeat(64)
        ))
        .unwrap();
        assert!(config.install.options.take_over);
        let chosen = &config.install.chosen[0];
        assert_eq!(chosen.arch.oci(), arch);
        assert_eq!(chosen.path, Path::new("/usr/bin/qemu-x-static"));
        assert_eq!(chosen.flags, Some("PF".parse().unwrap()));
        assert!(
            !Config::parse(r#"architectures = ["all"]"#)
                .unwrap()
                .install
                .options
                .take_over
        );

        let message = refused(&format!(
            "architectures = [\"all\"]\n[emulators.{arch}]\npath = \"bin/x\"\n"
        ));
        assert!(
            message.starts_with(&format!("emulators.{arch}: ")),
            "{message}"
        );
        assert!(message.contains("not an absolute path"), "{message}");
        let message = refused(&format!(
            "architectures = [\"all\"]\n[emulators.{arch}]\npth = \"/x\"\n"
        ));
        assert!(message.contains("unknown field `pth`"), "{message}");
        let other = Arch::ALL
            .into_iter()
            .filter(|arch| !arch.is_native())
            .nth(1)
            .unwrap()
            .oci();
        let message = refused(&format!(
            "architectures = [\"{arch}\"]\n[emulators.{other}]\npath = \"/x\"\n"
        ));
        assert!(
            message.contains("not among the architectures to install"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_file_says_how_to_get_one() {
        let error = Config::load(Path::new("/nonexistent/binfmt.toml")).unwrap_err();
        let shown = binfmt_misc::report::Report(&error).to_string();
        assert!(
            shown.starts_with("config /nonexistent/binfmt.toml: "),
            "{shown}"
        );
        assert!(shown.contains("--config"), "{shown}");
    }
}
