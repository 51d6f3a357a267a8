//! Starting and stopping `lmf api` for the api tests (`api_openai.rs`, `api_score.rs`).

use std::io::{BufRead, BufReader, Lines, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

/// A running `lmf api`.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// The rest of its stdout (taking and dropping it closes the pipe; the server must live
    /// on). Held, not read, by a test that leaves it open.
    #[allow(dead_code)]
    pub stdout: Option<Lines<BufReader<ChildStdout>>>,
}

/// Starts `lmf api yaml` on 127.0.0.1 and a free port (`API_PORT=0`), with `envs` set (and
/// `API_KEY` unset unless given), once it prints where it listens.
pub fn start(yaml: &Path, envs: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lmf"));
    cmd.args(["api", yaml.to_str().unwrap()])
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", "0")
        .env_remove("API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = stdout
            .next()
            .expect("lmf api exited before listening")
            .unwrap();
        if let Some(a) = line.strip_prefix("lmf api: listening on http://") {
            break a.to_string();
        }
    };
    Server {
        child,
        addr,
        stdout: Some(stdout),
    }
}

/// Sends SIGTERM and waits: the exit status and everything the server wrote to stderr.
pub fn stop(mut server: Server) -> (ExitStatus, String) {
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = server.child.wait().unwrap();
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}
