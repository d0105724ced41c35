//! Booting one guest under qemu-system and reading what its `/init` reports on the
//! console (the line protocol of `init.sh`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// What starts every line of the protocol (after whatever the firmware printed).
pub const PREFIX: &str = "binfmt-kernel-test: ";

/// One line of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `<step> ok [detail]` or `<step> FAIL <detail>`.
    Step {
        name: String,
        passed: bool,
        detail: String,
    },
    /// `fact <name>=<value>`.
    Fact { name: String, value: String },
    /// `done`: the script ran to its end.
    Done,
}

/// Reads a protocol line out of a console line; `None` for every other line.
pub fn parse_line(line: &str) -> Option<Report> {
    let (_, text) = line.split_once(PREFIX)?;
    let text = text.trim_end();
    if text == "done" {
        return Some(Report::Done);
    }
    if let Some(fact) = text.strip_prefix("fact ") {
        let (name, value) = fact.split_once('=')?;
        return Some(Report::Fact {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    let (name, rest) = text.split_once(' ')?;
    let (verdict, detail) = rest.split_once(' ').unwrap_or((rest, ""));
    let passed = match verdict {
        "ok" => true,
        "FAIL" => false,
        _ => return None,
    };
    Some(Report::Step {
        name: name.to_owned(),
        passed,
        detail: detail.to_owned(),
    })
}

/// How the qemu process ended.
#[derive(Debug)]
pub enum Ending {
    /// It exited (the guest powered off, or qemu failed).
    Exited(ExitStatus),
    /// It was killed after the timeout.
    TimedOut,
}

/// What one boot showed.
#[derive(Debug)]
pub struct Boot {
    /// The steps reported, in order, with when each arrived (since qemu started).
    pub steps: Vec<(Report, Duration)>,
    /// The facts reported.
    pub facts: BTreeMap<String, String>,
    /// When `boot ok` arrived.
    pub booted: Option<Duration>,
    /// When `done` arrived.
    pub done: Option<Duration>,
    /// How qemu ended, and after how long.
    pub ending: Ending,
    pub elapsed: Duration,
    /// The console log.
    pub console: PathBuf,
    /// qemu's own stderr, for when it did not start.
    pub stderr: String,
}

impl Boot {
    /// Each step's seconds (from the step before it; `boot` from qemu's start), one
    /// `<step> <ok|FAIL> <seconds>` line per step, then the facts.
    pub fn timings(&self) -> String {
        let mut out = String::new();
        let mut last = Duration::ZERO;
        for (report, at) in &self.steps {
            if let Report::Step { name, passed, .. } = report {
                let verdict = if *passed { "ok" } else { "FAIL" };
                let seconds = at.saturating_sub(last).as_secs_f64();
                out.push_str(&format!("{name} {verdict} {seconds:.1}\n"));
                last = *at;
            }
        }
        for (name, value) in &self.facts {
            out.push_str(&format!("fact {name}={value}\n"));
        }
        out
    }

    /// Takes in one console line that arrived `at` after qemu started.
    fn record(&mut self, line: &str, at: Duration) {
        match parse_line(line) {
            Some(Report::Fact { name, value }) => {
                self.facts.insert(name, value);
            }
            Some(Report::Done) => self.done = Some(at),
            Some(report) => {
                if matches!(&report, Report::Step { name, passed: true, .. } if name == "boot") {
                    self.booted = Some(at);
                }
                self.steps.push((report, at));
            }
            None => {}
        }
    }
}

/// Runs `command` (a qemu-system command line whose serial console is its stdout),
/// writing the console to `console`, until qemu exits or `timeout` passes.
pub fn run(mut command: Command, console: &Path, timeout: Duration) -> Result<Boot> {
    let mut log =
        File::create(console).with_context(|| format!("cannot create {}", console.display()))?;
    let stderr_path = console.with_extension("stderr");
    let stderr = File::create(&stderr_path)
        .with_context(|| format!("cannot create {}", stderr_path.display()))?;
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    let stdout = child.stdout.take().context("qemu has no stdout pipe")?;
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdout.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if lines.send((text, start.elapsed())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut boot = Boot {
        steps: Vec::new(),
        facts: BTreeMap::new(),
        booted: None,
        done: None,
        ending: Ending::TimedOut,
        elapsed: Duration::ZERO,
        console: console.to_owned(),
        stderr: String::new(),
    };
    let deadline = start + timeout;
    let mut record = |boot: &mut Boot, text: String, at: Duration| -> Result<()> {
        log.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", console.display()))?;
        boot.record(&text, at);
        Ok(())
    };
    loop {
        match received.recv_timeout(Duration::from_millis(200)) {
            Ok((text, at)) => record(&mut boot, text, at)?,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // stdout closed: qemu is exiting.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                boot.ending = Ending::Exited(child.wait().context("cannot wait for qemu")?);
                break;
            }
        }
        if let Some(status) = child.try_wait().context("cannot wait for qemu")? {
            // What is still in the pipe.
            while let Ok((text, at)) = received.recv_timeout(Duration::from_millis(500)) {
                record(&mut boot, text, at)?;
            }
            boot.ending = Ending::Exited(status);
            break;
        }
        if Instant::now() >= deadline {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
            boot.ending = Ending::TimedOut;
            break;
        }
    }
    let _ = reader.join();
    boot.elapsed = start.elapsed();
    boot.stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    Ok(boot)
}

/// The verdict on a boot: every step of `expected` reported ok, in that order, and
/// the script ran to its end; otherwise every reason it did not pass.
pub fn problems(boot: &Boot, expected: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let reported: Vec<(&str, bool, &str)> = boot
        .steps
        .iter()
        .filter_map(|(report, _)| match report {
            Report::Step {
                name,
                passed,
                detail,
            } => Some((name.as_str(), *passed, detail.as_str())),
            _ => None,
        })
        .collect();
    for (name, passed, detail) in &reported {
        if !passed {
            problems.push(format!("{name} FAIL {detail}"));
        } else if !expected.contains(name) {
            problems.push(format!("{name}: a step this xtask does not know"));
        }
    }
    let names: Vec<&str> = reported.iter().map(|(name, _, _)| *name).collect();
    for step in expected {
        match names.iter().filter(|name| *name == step).count() {
            0 => problems.push(format!("{step}: never reported")),
            1 => {}
            n => problems.push(format!("{step}: reported {n} times")),
        }
    }
    if boot.done.is_none() {
        problems.push("the guest's /init did not run to its end (no `done`)".to_owned());
    }
    match &boot.ending {
        Ending::TimedOut => problems.push(format!(
            "killed after {:.0} s: the guest did not power off",
            boot.elapsed.as_secs_f64()
        )),
        Ending::Exited(status) if !status.success() => {
            let stderr = boot.stderr.trim();
            problems.push(if stderr.is_empty() {
                format!("qemu exited with {status}")
            } else {
                format!("qemu exited with {status}: {stderr}")
            });
        }
        Ending::Exited(_) => {}
    }
    if boot.booted.is_none() && problems.iter().all(|p| !p.starts_with("boot")) {
        problems.push("the kernel did not start /init".to_owned());
    }
    problems
}

/// Fails when `program` is not on `$PATH`, with the Debian package that has it.
pub fn check_installed(program: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if found {
        Ok(())
    } else {
        Err(anyhow!(
            "{program} is not installed: `apt-get install {package}` (Debian 12's qemu-system \
             7.2 boots every kernel of the matrix)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, passed: bool, detail: &str) -> (Report, Duration) {
        (
            Report::Step {
                name: name.to_owned(),
                passed,
                detail: detail.to_owned(),
            },
            Duration::from_secs(1),
        )
    }

    #[test]
    fn protocol_lines_are_found_behind_escape_codes() {
        assert_eq!(
            parse_line("\x1b[2J\x1b[01;01Hbinfmt-kernel-test: boot ok 6.1.0-50-amd64 x86_64\r\n"),
            Some(Report::Step {
                name: "boot".to_owned(),
                passed: true,
                detail: "6.1.0-50-amd64 x86_64".to_owned()
            })
        );
        assert_eq!(
            parse_line("binfmt-kernel-test: rerun ok\n"),
            Some(Report::Step {
                name: "rerun".to_owned(),
                passed: true,
                detail: String::new()
            })
        );
        assert_eq!(
            parse_line("binfmt-kernel-test: install FAIL exit 1, entries ''"),
            Some(Report::Step {
                name: "install".to_owned(),
                passed: false,
                detail: "exit 1, entries ''".to_owned()
            })
        );
        assert_eq!(
            parse_line("binfmt-kernel-test: fact page_size=16kB"),
            Some(Report::Fact {
                name: "page_size".to_owned(),
                value: "16kB".to_owned()
            })
        );
        assert_eq!(parse_line("binfmt-kernel-test: done\r"), Some(Report::Done));
        assert_eq!(parse_line("[    0.000000] Linux version 6.1.0"), None);
        assert_eq!(parse_line("binfmt-kernel-test: install maybe"), None);
    }

    fn boot(steps: Vec<(Report, Duration)>, done: bool, ending: Ending) -> Boot {
        Boot {
            booted: Some(Duration::from_secs(1)),
            steps,
            facts: BTreeMap::new(),
            done: done.then_some(Duration::from_secs(2)),
            ending,
            elapsed: Duration::from_secs(3),
            console: PathBuf::from("/console.log"),
            stderr: String::new(),
        }
    }

    fn exited(code: i32) -> Ending {
        use std::os::unix::process::ExitStatusExt as _;
        Ending::Exited(ExitStatus::from_raw(code << 8))
    }

    #[test]
    fn a_boot_passes_only_when_every_step_reported_ok_and_it_ran_to_its_end() {
        let expected = ["boot", "install"];
        let good = boot(
            vec![step("boot", true, ""), step("install", true, "")],
            true,
            exited(0),
        );
        assert!(problems(&good, &expected).is_empty());

        let failed = boot(
            vec![step("boot", true, ""), step("install", false, "exit 1")],
            true,
            exited(0),
        );
        assert_eq!(problems(&failed, &expected), ["install FAIL exit 1"]);

        let missing = boot(vec![step("boot", true, "")], false, Ending::TimedOut);
        assert_eq!(
            problems(&missing, &expected),
            [
                "install: never reported",
                "the guest's /init did not run to its end (no `done`)",
                "killed after 3 s: the guest did not power off"
            ]
        );

        let twice = boot(
            vec![
                step("boot", true, ""),
                step("install", true, ""),
                step("install", true, ""),
            ],
            true,
            exited(1),
        );
        assert_eq!(
            problems(&twice, &expected),
            [
                "install: reported 2 times",
                "qemu exited with exit status: 1"
            ]
        );
    }
}
