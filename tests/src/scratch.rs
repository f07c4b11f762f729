//! Scratch resources for tests: free loopback ports and temporary directories.

use std::path::PathBuf;

/// A loopback port free right now (bound, read, released). Another process
/// could take it before the test binds it again; on a test machine that race
/// is rare enough, and it lets tests hand fixed ports to child processes.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A temporary directory, removed when dropped.
pub struct Dir(PathBuf);

impl Dir {
    /// A fresh directory under the system temp dir, named after `name`.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meridian-{name}-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Dir(dir)
    }

    /// The path of `name` inside the directory, as a string for command lines.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
