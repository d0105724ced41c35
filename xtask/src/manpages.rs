//! The man pages and shell completions of `binfmt`, generated from its clap
//! definitions (`binfmt-cli`) by clap's own generators, so they say what `--help` says
//! and never drift from it (ripgrep's `rg --generate`, done at build time here so the
//! shipped binary carries no generator).
//!
//! `cargo xtask dist` writes them next to the binaries, where the `Dockerfile` and the
//! Debian packages take them from:
//!
//! | file | what |
//! |---|---|
//! | `dist/man/binfmt.1` | binfmt(1) |
//! | `dist/man/binfmt-<command>.1` | one per subcommand: binfmt-check(1), binfmt-doctor(1), ... |
//! | `dist/completions/binfmt.bash` | bash (`/usr/share/bash-completion/completions/binfmt`) |
//! | `dist/completions/_binfmt` | zsh (`/usr/share/zsh/vendor-completions/_binfmt`) |
//! | `dist/completions/binfmt.fish` | fish (`/usr/share/fish/vendor_completions.d/binfmt.fish`) |
//!
//! The output depends on nothing but the definitions (no date, no path), so it is as
//! reproducible as the binaries.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

/// Where the man pages go, under the output folder.
pub const MAN_DIR: &str = "man";
/// Where the completions go, under the output folder.
pub const COMPLETIONS_DIR: &str = "completions";

/// The completion files and the shell each is for.
pub const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "binfmt.bash"),
    (Shell::Zsh, "_binfmt"),
    (Shell::Fish, "binfmt.fish"),
];

/// binfmt's command as clap builds it, with the version the binaries report.
fn command() -> clap::Command {
    binfmt_cli::Args::command().version(env!("CARGO_PKG_VERSION"))
}

/// Writes every man page and completion file under `out` (replacing what was there)
/// and returns their paths.
pub fn write(out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = out.join(MAN_DIR);
    recreate(&man)?;
    for page in pages() {
        let path = man.join(page.get_filename());
        let mut text = Vec::new();
        page.render(&mut text)
            .with_context(|| format!("rendering {}", path.display()))?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let completions = out.join(COMPLETIONS_DIR);
    recreate(&completions)?;
    for (shell, name) in COMPLETIONS {
        let path = completions.join(name);
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut command(), "binfmt", &mut text);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// binfmt(1) and one page per subcommand (`binfmt-check`), as `clap_mangen` names
/// them.
fn pages() -> Vec<clap_mangen::Man> {
    let mut command = command().disable_help_subcommand(true);
    command.build();
    let mut pages = vec![clap_mangen::Man::new(command.clone()).manual("binfmt manual")];
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        // `binfmt check` is documented as binfmt-check(1), as git and cargo name theirs.
        let name = format!("binfmt-{}", sub.get_name());
        let sub = sub.clone().display_name(name);
        pages.push(clap_mangen::Man::new(sub).manual("binfmt manual"));
    }
    pages
}

/// Empties `dir`, creating it if need be: a subcommand removed from binfmt leaves no
/// stale page behind.
fn recreate(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_page_and_every_shell_a_completion() {
        let out = std::env::temp_dir().join(format!("binfmt-manpages-{}", std::process::id()));
        let written = write(&out).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in [
            "binfmt.1",
            "binfmt-check.1",
            "binfmt-doctor.1",
            "binfmt-run.1",
            "binfmt-apply.1",
            "binfmt-emulators.1",
            "binfmt-enable.1",
            "binfmt-disable.1",
            "binfmt.bash",
            "_binfmt",
            "binfmt.fish",
        ] {
            assert!(
                names.contains(&expected.to_owned()),
                "{expected}: {names:?}"
            );
        }
        let main = fs::read_to_string(out.join(MAN_DIR).join("binfmt.1")).unwrap();
        assert!(
            main.starts_with(".ie \\n(.g .ds Aq \\(aq") || main.contains(".TH binfmt 1"),
            "{main}"
        );
        assert!(
            main.contains("\\-\\-install"),
            "the options are on the page"
        );
        assert!(
            main.contains("Exit codes:") && main.contains("125"),
            "the exit codes `binfmt --help` lists are on the page:\n{main}"
        );
        let check = fs::read_to_string(out.join(MAN_DIR).join("binfmt-check.1")).unwrap();
        assert!(check.contains(".TH binfmt-check 1"), "{check}");
        let bash = fs::read_to_string(out.join(COMPLETIONS_DIR).join("binfmt.bash")).unwrap();
        assert!(
            bash.contains("--take-over") && bash.contains("doctor"),
            "{bash}"
        );
        // Written twice, the same bytes: nothing of time or place goes in.
        let again = std::env::temp_dir().join(format!("binfmt-manpages-{}-2", std::process::id()));
        write(&again).unwrap();
        for path in &written {
            let relative = path.strip_prefix(&out).unwrap();
            assert_eq!(
                fs::read(path).unwrap(),
                fs::read(again.join(relative)).unwrap()
            );
        }
        fs::remove_dir_all(&out).unwrap();
        fs::remove_dir_all(&again).unwrap();
    }
}
