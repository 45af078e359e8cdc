//! A throwaway PostgreSQL server for the tests that need one: `initdb` into a temporary folder
//! and the server started from it, listening on a unix socket only (no port to collide with),
//! as the `postgres` user when the tests run as root. It belongs to the test process: started
//! from a thread that lives as long as the process, with the parent-death signal set, so the
//! server stops when the tests end, however they end.
//!
//! Without PostgreSQL (`initdb` not found in `/usr/lib/postgresql/*/bin`, `INFERLOG_PG_BIN` or
//! the `PATH`) the PostgreSQL tests are skipped with one line on stderr saying how to run them;
//! `.ci/run` installs PostgreSQL and sets `INFERLOG_TEST_POSTGRES=require`, which turns a
//! missing server into a failure.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running server: its folder (data and socket) and process.
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    _keep: tempfile::TempDir,
}

/// The folder holding `initdb`, `postgres` and `pg_ctl`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("INFERLOG_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some(dir) = versions.pop() {
        return Some(dir);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|p| p.join("initdb").exists())
}

/// (uid, gid) of the `postgres` user when running as root (PostgreSQL refuses to run as root).
fn owner() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam reads a NUL-terminated name; the result is read before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is a valid passwd record returned above.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl PgServer {
    /// Initialises a cluster in a new temporary folder and starts it. `None` when PostgreSQL
    /// is not installed.
    pub fn start() -> Option<PgServer> {
        let bin = bin_dir()?;
        let owner = owner();
        let keep = tempfile::Builder::new().prefix("pg").tempdir().unwrap();
        let dir = keep.path().to_path_buf();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let out = as_owner(&mut Command::new(bin.join("initdb")), owner)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(dir.join("data"))
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = PgServer {
            dir,
            bin,
            owner,
            child: Mutex::new(None),
            _keep: keep,
        };
        server.run();
        Some(server)
    }

    /// Starts the server process and waits until it takes connections.
    fn run(&self) {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join("postgres"));
        as_owner(&mut cmd, self.owner)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-c", "listen_addresses=", "-c"])
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=300"])
            .args(["-c", "shared_buffers=32MB"])
            // Each line names its database, so a test can read its own database's lines.
            .args(["-c", "log_line_prefix=%m [%p] db=%d "])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("server.log")).unwrap());
        // SAFETY: prctl only sets this (child) process's parent-death signal: an immediate
        // shutdown of the server when the thread that started it ends.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("postgres starts");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.dir.join(".s.PGSQL.5432").exists() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The socket appears a moment before connections are taken.
        while !self.ready() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-U", "postgres", "-q"])
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The server log's lines about database `db`.
    pub fn log_of(&self, db: &str) -> Vec<String> {
        let tag = format!("db={db} ");
        self.log()
            .lines()
            .filter(|l| l.contains(&tag))
            .map(str::to_string)
            .collect()
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@localhost/{db}?host={}",
            self.dir.display()
        )
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("create database {name}"));
        self.url(&name)
    }

    /// Runs `sql` with `psql` on database `db`; its output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A writing transaction (it has its id) held open in `psql` on database `db` until
    /// [`OpenTransaction::commit`].
    pub fn open_transaction(&self, db: &str) -> OpenTransaction {
        let mut child = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-U", "postgres", "-d", db, "-XAtq", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("psql runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"begin;\nselect pg_current_xact_id();\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // psql prints the id once the transaction has it.
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.trim().parse::<u64>().is_ok(), "psql said {line:?}");
        OpenTransaction {
            child,
            stdin: Some(stdin),
            _stdout: stdout,
        }
    }

    /// Stops the server as `pg_ctl stop -m fast` would (SIGINT: connections are cut, nothing
    /// committed is lost) and starts it again on the same folder.
    pub fn restart(&self, down_for: Duration) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // SAFETY: kill sends a signal to the server process this value owns.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            child.wait().unwrap();
        }
        // Down for a while on purpose: the tests watch what the service does meanwhile.
        std::thread::sleep(down_for);
        self.run();
    }
}

/// A transaction open in a `psql` process ([`PgServer::open_transaction`]); dropped without
/// [`OpenTransaction::commit`], the process is killed and the server rolls it back.
pub struct OpenTransaction {
    child: Child,
    stdin: Option<ChildStdin>,
    _stdout: BufReader<ChildStdout>,
}

impl OpenTransaction {
    pub fn commit(mut self) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"commit;\n").unwrap();
        drop(stdin);
        assert!(
            self.child.wait().unwrap().success(),
            "psql could not commit"
        );
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // SAFETY: as in restart: a signal to the server process this value owns.
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let _ = child.wait();
        }
    }
}

/// Servers of this process, stopped and their folders removed when it exits: a leaked
/// `&'static` server is never dropped, and each test run would leave its cluster behind.
static STARTED: Mutex<Vec<&'static PgServer>> = Mutex::new(Vec::new());

extern "C" fn remove_servers() {
    let Ok(servers) = STARTED.lock() else { return };
    for server in servers.iter() {
        if let Ok(mut child) = server.child.lock()
            && let Some(mut child) = child.take()
        {
            // SAFETY: a signal to the server process this value owns.
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&server.dir);
    }
}

/// Starts a server on a thread that lives as long as the test process (the server's parent
/// death signal follows that thread); it is stopped and its folder removed at exit.
pub fn start_server() -> Option<&'static PgServer> {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a function with no preconditions, run once at process exit.
        unsafe { libc::atexit(remove_servers) };
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let server: Option<&'static PgServer> = PgServer::start().map(|s| &*Box::leak(Box::new(s)));
        if let Some(s) = server {
            STARTED.lock().unwrap().push(s);
        }
        tx.send(server).unwrap();
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap()
}

/// The server the PostgreSQL tests share, started on first use; `None` (with one line on
/// stderr) when PostgreSQL is not installed and not required.
pub fn shared() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<&'static PgServer>> = OnceLock::new();
    *SERVER.get_or_init(|| {
        let server = start_server();
        if server.is_none() {
            let required = std::env::var("INFERLOG_TEST_POSTGRES").is_ok_and(|v| v == "require");
            assert!(
                !required,
                "INFERLOG_TEST_POSTGRES=require but no PostgreSQL was found (initdb in /usr/lib/postgresql/*/bin, INFERLOG_PG_BIN or PATH)"
            );
            // Straight to stderr, past the test harness's capture, so it shows in every run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL tests SKIPPED: no PostgreSQL found. Install Debian's postgresql (or set INFERLOG_PG_BIN to its bin folder) to run them; .ci/run does."
            );
        }
        server
    })
}

/// A fresh database on the shared server, or `None` when the PostgreSQL tests are skipped.
pub fn database() -> Option<String> {
    shared().map(PgServer::fresh_database)
}

/// The database a URL of [`PgServer::url`] names.
pub fn database_name(url: &str) -> &str {
    url.split("localhost/")
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .expect("a URL made by PgServer::url")
}
