//! Real headless Chromium for the viewer's end-to-end test: runs
//! `tests/browser/viewer.e2e.mjs` (playwright-core driving Debian's `chromium`) with Node.js,
//! bounded in time. `make browser` installs all three; a missing one fails the test with that
//! command, it never skips.

use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo_root;

/// How long the browser check may take in all (it takes a few seconds).
pub const BROWSER_LIMIT: Duration = Duration::from_secs(120);

/// The Chromium binary: `$MESHTRACE_CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("MESHTRACE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "{} is missing: run `make browser` (Debian's chromium, Node.js and playwright-core)",
        path.display()
    );
    path
}

/// Runs the viewer check script with `args` (`--flag value` pairs) and returns what it
/// printed; fails with its output when it fails or outlives [`BROWSER_LIMIT`].
pub fn run_viewer_check(args: &[(&str, String)]) -> anyhow::Result<String> {
    let dir = repo_root().join("tests/browser");
    let playwright = dir.join("node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} is missing: run `make browser` (npm ci in tests/browser)",
        playwright.display()
    );
    let chromium = chromium();
    let output = tempfile::tempdir()?;
    let (stdout_path, stderr_path) = (output.path().join("out"), output.path().join("err"));
    let mut command = Command::new("node");
    command
        .arg(dir.join("viewer.e2e.mjs"))
        .env("MESHTRACE_CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?);
    for (flag, value) in args {
        command.arg(format!("--{flag}")).arg(value);
    }
    let mut child = command
        .spawn()
        .context("running node (Node.js is required: `make browser`)")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = format!(
        "{}{}",
        std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    match status {
        Some(status) if status.success() => Ok(printed),
        Some(status) => bail!("viewer check failed ({status}):\n{printed}"),
        None => bail!("viewer check still running after {BROWSER_LIMIT:?}; killed:\n{printed}"),
    }
}
