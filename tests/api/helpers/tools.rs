//! External programs some tests run: `promtool`, the `sqlite3` shell, `logrotate` and
//! Chromium. A test asks [`tool`] for one; where it is missing, the test (or the part of it
//! that needs the program) is skipped with one line on stderr naming the test, the program and
//! the Debian package that installs it. `INFERLOG_TEST_TOOLS=require` (set by `.ci/run`, which
//! installs them) turns a missing program into a failure instead, so that a machine without
//! one cannot pass by skipping. The older `INFERLOG_TEST_BROWSER=require` and
//! `INFERLOG_TEST_LOGROTATE=require` still require their one program each.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A program the tests may run.
struct Known {
    /// The name tests ask for.
    name: &'static str,
    /// The names the program goes by, tried in order.
    programs: &'static [&'static str],
    /// The Debian package that installs it.
    package: &'static str,
    /// An older switch that requires this program alone.
    switch: Option<&'static str>,
}

const KNOWN: &[Known] = &[
    Known {
        name: "promtool",
        programs: &["promtool"],
        package: "prometheus",
        switch: None,
    },
    Known {
        name: "sqlite3",
        programs: &["sqlite3"],
        package: "sqlite3",
        switch: None,
    },
    Known {
        name: "logrotate",
        programs: &["logrotate"],
        package: "logrotate",
        switch: Some("INFERLOG_TEST_LOGROTATE"),
    },
    Known {
        name: "chromium",
        programs: &["chromium", "chromium-browser"],
        package: "chromium",
        switch: Some("INFERLOG_TEST_BROWSER"),
    },
];

/// Where program `name` (one of [`KNOWN`]) is installed, on the `PATH` or in an `sbin` folder,
/// and it answers `--version`; `None`, with the one line that says what is skipped, where it
/// is not. Panics instead when the tool is required.
pub fn tool(name: &str) -> Option<PathBuf> {
    let known = KNOWN
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("{name} is not a tool tests/api/helpers/tools.rs knows"));
    let found = known.programs.iter().find_map(|p| installed(p));
    if found.is_none() {
        let require = |var: &str| std::env::var(var).is_ok_and(|v| v == "require");
        let switch = ["INFERLOG_TEST_TOOLS"]
            .into_iter()
            .chain(known.switch)
            .find(|s| require(s));
        if let Some(switch) = switch {
            panic!(
                "{switch}=require but {name} is not installed (Debian package {})",
                known.package
            );
        }
        let current = std::thread::current();
        let test = current.name().unwrap_or("a test");
        // Straight to stderr, past the test harness's capture, so it shows in every run.
        let _ = writeln!(
            std::io::stderr(),
            "{test} SKIPPED (what runs {name}): {name} is not installed. Install Debian's {} to run it; .ci/run does, and sets INFERLOG_TEST_TOOLS=require.",
            known.package
        );
    }
    found
}

/// The first `program` on the `PATH` or in the `sbin` folders (not on every user's `PATH`)
/// that runs.
fn installed(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file() && runs(p))
}

fn runs(program: &Path) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}
