//! `--uninstall LIST`: remove entries by name, glob or architecture.
//!
//! Items are checked before anything is removed: a name that could not be an entry
//! (`register`, `status`, `../x`, control characters) refuses the whole list. Only
//! entries that exist are touched; an item that matches nothing is already in the
//! state asked for, which is success (docker/setup-qemu-action runs
//! `--uninstall qemu-*` on machines with nothing registered).

use binfmt_misc::{Table, entry::validate_name};
use qemu_catalog::Arch;
use qemu_catalog::arch::MAX_LIST_LENGTH;

/// One item of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A glob with `*` and `?` over entry names (`qemu-*`).
    Glob(String),
    /// An entry name or an architecture (`qemu-aarch64`, `arm64`, `linux/arm64`): an
    /// existing entry of exactly that name wins, else the architecture's entry.
    Name(String),
}

/// Parses the list, refusing it whole if any item could not name an entry.
pub fn parse(list: &str) -> Result<Vec<Target>, String> {
    if list.len() > MAX_LIST_LENGTH {
        return Err(format!(
            "the list is {} bytes long; at most {MAX_LIST_LENGTH} are accepted: give a glob \
             such as `qemu-*` instead",
            list.len()
        ));
    }
    list.split(',')
        // Only spaces are trimmed: a newline or other control character refuses the list.
        .map(|item| item.trim_matches(' '))
        .map(|item| {
            if item.contains(['*', '?']) {
                // A glob must be a valid name once its wildcards are filled in.
                validate_name(&item.replace(['*', '?'], "x"))
                    .map(|()| Target::Glob(item.to_owned()))
                    .map_err(|reason| format!("cannot uninstall {item:?}: {reason}"))
            } else if Arch::parse(item).is_ok() {
                Ok(Target::Name(item.to_owned()))
            } else {
                validate_name(item)
                    .map(|()| Target::Name(item.to_owned()))
                    .map_err(|reason| format!("cannot uninstall {item:?}: {reason}"))
            }
        })
        .collect()
}

/// Which existing entries the targets select, each once, in table order.
///
/// A staging entry that an interrupted `--install` left (`qemu-aarch64.binfmt-new`)
/// goes with the entry it stands in for: it would keep the architecture working.
pub fn select(targets: &[Target], entries: &[String]) -> Vec<String> {
    let matches = |target: &Target, entry: &str| match target {
        Target::Glob(pattern) => glob_matches(pattern.as_bytes(), entry.as_bytes()),
        Target::Name(name) if entries.contains(name) => name == entry,
        Target::Name(name) => {
            name == entry || Arch::parse(name).is_ok_and(|arch| arch.entry_name() == entry)
        }
    };
    let wanted = |entry: &String| {
        targets.iter().any(|target| {
            matches(target, entry)
                || binfmt_misc::staged_name(entry).is_some_and(|staged| matches(target, staged))
        })
    };
    entries
        .iter()
        .filter(|entry| wanted(entry))
        .cloned()
        .collect()
}

/// Removes the selected entries, printing tonistiigi-style lines; returns how many
/// removals failed.
pub fn uninstall(table: &impl Table, targets: &[Target]) -> Result<usize, binfmt_misc::Error> {
    let entries = table.entry_names()?;
    let selected = select(targets, &entries);
    if selected.is_empty() {
        eprintln!("uninstalling: nothing matches, nothing to do");
    }
    let mut failed = 0;
    for name in selected {
        match table.remove(&name) {
            Ok(()) => eprintln!("uninstalling: {name} OK"),
            Err(error) => {
                failed += 1;
                eprintln!("uninstalling: {name} FAILED: {error}");
            }
        }
    }
    Ok(failed)
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

    #[test]
    fn globs_names_and_arches_select_existing_entries() {
        let entries = names(&["qemu-aarch64", "qemu-riscv64", "rosetta", "qemu-s390x"]);
        let pick = |list: &str| select(&parse(list).unwrap(), &entries);
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
            assert!(parse(list).is_err(), "{list:?} accepted");
        }
        // A glob can never reach a control file: they are not entries.
        let entries = names(&["qemu-aarch64"]);
        assert_eq!(select(&parse("*").unwrap(), &entries), entries);
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
        let entries = names(&[
            "qemu-aarch64",
            "qemu-aarch64.binfmt-new",
            "qemu-s390x.binfmt-new",
        ]);
        let pick = |list: &str| select(&parse(list).unwrap(), &entries);
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
        let error = parse(&"qemu-*,".repeat(20_000)).unwrap_err();
        assert!(error.contains("140000 bytes long"), "{error}");
        assert!(parse("qemu-aarch64\n").is_err());
        assert!(parse("\tqemu-aarch64").is_err());
    }
}
