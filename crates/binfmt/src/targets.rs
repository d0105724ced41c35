//! Which entries a list names: `--uninstall LIST`, `binfmt enable LIST` and `binfmt
//! disable LIST` take entry names (`qemu-aarch64`, `rosetta`), globs (`qemu-*`) and
//! architectures (`arm64`, `linux/arm64`), comma-separated.
//!
//! Items are checked before anything is changed: a name that could not be an entry
//! (`register`, `status`, `../x`, control characters) refuses the whole list. Only
//! entries that exist are selected; an item that matches nothing is already in the
//! state asked for, which is success (docker/setup-qemu-action runs
//! `--uninstall qemu-*` on machines with nothing registered).
//!
//! The table is shared with other tools (Rosetta, FEX, box64, WSL's `WSLInterop`), so a
//! glob or an architecture selects only binfmt's entries
//! ([`is_binfmts_entry`](crate::survey::is_binfmts_entry)): `--uninstall '*'` on WSL2
//! leaves `WSLInterop` working. Another tool's entry is selected only by its exact
//! name, and the ones a glob or an architecture passed over are reported
//! ([`Selected::left_alone`]).

use binfmt_misc::{Entry, entry::validate_name};
use qemu_catalog::Arch;
use qemu_catalog::arch::MAX_LIST_LENGTH;

use crate::outcome::Message;
use crate::survey::{claims, is_binfmts_entry};

/// One item of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A glob with `*` and `?` over entry names (`qemu-*`).
    Glob(String),
    /// An entry name or an architecture (`qemu-aarch64`, `arm64`, `linux/arm64`): an
    /// existing entry of exactly that name wins, else the architecture's entry.
    Name(String),
}

/// Parses the list, refusing it whole if any item could not name an entry; `verb`
/// (`uninstall`, `disable`) says what the list is for, in the errors.
pub fn parse(list: &str, verb: &str) -> Result<Vec<Target>, Message> {
    if list.len() > MAX_LIST_LENGTH {
        return Err(Message::new(format!(
            "the list is {} bytes long; at most {MAX_LIST_LENGTH} are accepted",
            list.len()
        ))
        .fix("give a glob such as `qemu-*` instead"));
    }
    list.split(',')
        // Only spaces are trimmed: a newline or other control character refuses the list.
        .map(|item| item.trim_matches(' '))
        .map(|item| {
            if item.contains(['*', '?']) {
                // A glob must be a valid name once its wildcards are filled in.
                validate_name(&item.replace(['*', '?'], "x"))
                    .map(|()| Target::Glob(item.to_owned()))
                    .map_err(|reason| Message::new(format!("cannot {verb} {item:?}: {reason}")))
            } else if Arch::parse(item).is_ok() {
                Ok(Target::Name(item.to_owned()))
            } else {
                validate_name(item)
                    .map(|()| Target::Name(item.to_owned()))
                    .map_err(|reason| Message::new(format!("cannot {verb} {item:?}: {reason}")))
            }
        })
        .collect()
}

/// The entries a list selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selected {
    /// The names selected, each once, in table order.
    pub selected: Vec<String>,
    /// Other tools' entries that a glob or an architecture matched and that were
    /// therefore not selected.
    pub left_alone: Vec<String>,
}

/// Which of `entries` (the table's, in its order) the targets select.
///
/// A staging entry that an interrupted `--install` left (`qemu-aarch64.binfmt-new`)
/// goes with the entry it stands in for: it would keep the architecture working.
pub fn select(targets: &[Target], entries: &[Entry]) -> Selected {
    let exists = |name: &str| entries.iter().any(|entry| entry.registration.name == name);
    // Whether `target` names the entry called `name` exactly.
    let exactly = |target: &Target, name: &str| matches!(target, Target::Name(n) if n == name);
    // Whether a glob or an architecture of `target` takes in `entry`, called `name`.
    let by_pattern = |target: &Target, entry: &Entry, name: &str| match target {
        Target::Glob(pattern) => glob_matches(pattern.as_bytes(), name.as_bytes()),
        Target::Name(item) if exists(item) => false,
        Target::Name(item) => {
            Arch::parse(item).is_ok_and(|arch| arch.entry_name() == name || claims(entry, arch))
        }
    };
    let mut targeted = Selected::default();
    for entry in entries {
        let name = entry.registration.name.as_str();
        let staged = binfmt_misc::stands_in_for(name);
        let named = |target: &Target| {
            exactly(target, name) || staged.is_some_and(|staged| exactly(target, staged))
        };
        let matched = |target: &Target| {
            by_pattern(target, entry, name)
                || staged.is_some_and(|staged| by_pattern(target, entry, staged))
        };
        if targets.iter().any(named) || (is_binfmts_entry(entry) && targets.iter().any(matched)) {
            targeted.selected.push(name.to_owned());
        } else if targets.iter().any(matched) {
            targeted.left_alone.push(name.to_owned());
        }
    }
    targeted
}

/// Every one of binfmt's entries among `entries`: what `enable` and `disable` act on
/// without a list.
pub fn all_binfmts(entries: &[Entry]) -> Selected {
    Selected {
        selected: entries
            .iter()
            .filter(|entry| is_binfmts_entry(entry))
            .map(|entry| entry.registration.name.clone())
            .collect(),
        left_alone: Vec::new(),
    }
}

/// Shell-style matching with `*` (any run) and `?` (one byte), nothing else.
///
/// Greedy with one backtrack point (the last `*`), so it takes at most
/// `pattern × name` steps: a hostile pattern such as `*a*a*a…b` cannot make it
/// exponential, as naive recursion would be.
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: its pattern position and the name position
    // it was tried at.
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                backtrack = Some((p, n));
            }
            Some(&byte) if byte == b'?' || byte == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match backtrack {
                // Let the last `*` take one more byte and try again.
                Some((after_star, tried_at)) => {
                    p = after_star;
                    n = tried_at + 1;
                    backtrack = Some((after_star, n));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Entries of these names, each for the architecture its name says (riscv64 for
    /// the others), with an interpreter that is not binfmt's file.
    fn entries(list: &[&str]) -> Vec<Entry> {
        list.iter()
            .map(|name| {
                let arch = Arch::ALL
                    .into_iter()
                    .find(|arch| name.starts_with(&arch.entry_name()))
                    .unwrap_or(Arch::Riscv64);
                let mut entry = crate::testing::entry(arch, true, "POCF");
                entry.registration.name = (*name).to_owned();
                entry
            })
            .collect()
    }

    fn pick_from(list: &str, table: &[&str]) -> Vec<String> {
        select(&parse(list, "uninstall").unwrap(), &entries(table)).selected
    }

    #[test]
    fn globs_names_and_arches_select_existing_entries() {
        let table = ["qemu-aarch64", "qemu-riscv64", "rosetta", "qemu-s390x"];
        let pick = |list: &str| pick_from(list, &table);
        assert_eq!(
            pick("qemu-*"),
            names(&["qemu-aarch64", "qemu-riscv64", "qemu-s390x"])
        );
        assert_eq!(
            pick("aarch64,riscv64"),
            names(&["qemu-aarch64", "qemu-riscv64"])
        );
        assert_eq!(pick("linux/arm64"), names(&["qemu-aarch64"]));
        assert_eq!(pick("rosetta"), names(&["rosetta"]));
        assert_eq!(pick("qemu-?390x"), names(&["qemu-s390x"]));
        assert_eq!(pick("qemu-mips64"), names(&[]));
        assert_eq!(
            pick("mips64,qemu-aarch64,qemu-a*"),
            names(&["qemu-aarch64"])
        );
    }

    #[test]
    fn control_files_and_escapes_are_refused() {
        for list in [
            "register",
            "status",
            "../qemu-aarch64",
            "qemu-*,register",
            "a/b",
            "x\ny",
            "",
            "qemu-aarch64,",
        ] {
            assert!(parse(list, "uninstall").is_err(), "{list:?} accepted");
        }
        // A glob can never reach a control file: they are not entries.
        assert_eq!(pick_from("*", &["qemu-aarch64"]), names(&["qemu-aarch64"]));
    }

    #[test]
    fn glob_semantics() {
        assert!(glob_matches(b"*", b""));
        assert!(glob_matches(b"q*64", b"qemu-riscv64"));
        assert!(!glob_matches(b"q*64", b"qemu-s390x"));
        assert!(glob_matches(b"a?c", b"abc"));
        assert!(!glob_matches(b"a?c", b"ac"));
        assert!(glob_matches(b"*a*b", b"xaxxab"));
        assert!(glob_matches(b"a**b", b"ab"));
        assert!(!glob_matches(b"a*b", b"abc"));
        assert!(glob_matches(b"*?", b"x"));
        assert!(!glob_matches(b"*?", b""));
        assert!(glob_matches(b"qemu-*", b"qemu-aarch64.binfmt-new"));
    }

    /// Regression: recursive matching took exponential time on many stars; a list of
    /// them is as long as the length limit allows and must still answer at once.
    #[test]
    fn hostile_globs_are_fast() {
        let pattern = "*a".repeat(120) + "b";
        let name = "a".repeat(255);
        let started = std::time::Instant::now();
        assert!(!glob_matches(pattern.as_bytes(), name.as_bytes()));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn staging_entries_go_with_their_entry() {
        let table = [
            "qemu-aarch64",
            "qemu-aarch64.binfmt-new",
            "qemu-s390x.binfmt-new",
        ];
        let pick = |list: &str| pick_from(list, &table);
        assert_eq!(
            pick("arm64"),
            names(&["qemu-aarch64", "qemu-aarch64.binfmt-new"])
        );
        assert_eq!(
            pick("qemu-aarch64"),
            names(&["qemu-aarch64", "qemu-aarch64.binfmt-new"])
        );
        assert_eq!(pick("s390x"), names(&["qemu-s390x.binfmt-new"]));
        assert_eq!(pick("qemu-s390x"), names(&["qemu-s390x.binfmt-new"]));
    }

    #[test]
    fn absurd_lists_are_refused() {
        let error = parse(&"qemu-*,".repeat(20_000), "uninstall").unwrap_err();
        assert!(error.to_string().contains("140000 bytes long"), "{error}");
        assert!(parse("qemu-aarch64\n", "uninstall").is_err());
        assert!(parse("\tqemu-aarch64", "uninstall").is_err());
    }

    #[test]
    fn globs_and_architectures_leave_other_tools_entries_alone() {
        // WSL's interop entry, Rosetta's for amd64 programs, FEX's, and binfmt's own,
        // one of them an entry under another name whose interpreter is binfmt's file.
        let mut table = entries(&[
            "WSLInterop",
            "rosetta",
            "FEX-x86_64",
            "qemu-aarch64",
            "arm64-copy",
        ]);
        table[1].registration.matcher = Arch::Amd64.matcher();
        table[2].registration.matcher = Arch::Amd64.matcher();
        table[4].registration.matcher = Arch::Arm64.matcher();
        table[4].registration.interpreter = "/var/lib/binfmt/qemu-aarch64-0123456789abcdef".into();
        let select = |list: &str| select(&parse(list, "uninstall").unwrap(), &table);
        assert_eq!(
            select("*"),
            Selected {
                selected: names(&["qemu-aarch64", "arm64-copy"]),
                left_alone: names(&["WSLInterop", "rosetta", "FEX-x86_64"]),
            }
        );
        assert_eq!(
            select("amd64"),
            Selected {
                selected: names(&[]),
                left_alone: names(&["rosetta", "FEX-x86_64"]),
            }
        );
        assert_eq!(
            select("arm64").selected,
            names(&["qemu-aarch64", "arm64-copy"])
        );
        // Named exactly, another tool's entry is selected.
        assert_eq!(
            select("rosetta,WSLInterop").selected,
            names(&["WSLInterop", "rosetta"])
        );
        assert_eq!(
            all_binfmts(&table).selected,
            names(&["qemu-aarch64", "arm64-copy"])
        );
    }
}
