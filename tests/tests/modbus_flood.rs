//! The SunSpec server under connection floods: at most
//! `modbus.max_connections` are served, silent ones are closed after
//! `modbus.idle_timeout_s`, and a failed `accept` (out of file descriptors)
//! is retried, never fatal. Checked with a separate pymodbus client, twice
//! over, against floods of 1,100 sockets. Its own test binary: it changes
//! the process's file-descriptor limit.

use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bms_e2e::{demo_site, section, workspace_root};
use bmshost::site::{RackSite, RunOptions, Speed};

fn probe_reads(port: u16) -> serde_json::Value {
    let out = Command::new(bms_e2e::python(&["sunspec2", "pymodbus"]))
        .arg(workspace_root().join("tests/py/modbus_probe.py"))
        .args(["127.0.0.1", &port.to_string(), "1", "read", "40000", "2"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn set_nofile(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    }
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

fn flood(port: u16, n: usize) -> (Vec<TcpStream>, usize) {
    let (mut held, mut failed) = (Vec::new(), 0);
    for _ in 0..n {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => held.push(s),
            Err(_) => failed += 1,
        }
    }
    (held, failed)
}

#[test]
fn connection_floods_and_descriptor_exhaustion_leave_the_server_answering() {
    let _one = bms_e2e::one_paced_rack();
    let cfg = demo_site(|t| {
        let mut m = toml::Table::new();
        m.insert("bind".into(), "127.0.0.1:0".into());
        m.insert("max_connections".into(), 16.into());
        m.insert("idle_timeout_s".into(), 1.0.into());
        t.insert("modbus".into(), toml::Value::Table(m));
        section(t, &["control"]).insert("status_interval_ms".into(), 1_000_000.into());
    });
    let dir = tempfile::tempdir().unwrap();
    let mut site = RackSite::assemble_in(cfg, dir.path().to_path_buf()).unwrap();
    let server = site.start_modbus().unwrap().expect("[modbus] configured");
    let port = server.local_addr.port();
    let board = server.board.clone();
    let handle = std::thread::spawn(move || {
        let _server = server;
        site.run(
            &RunOptions {
                speed: Speed::Factor(1.0),
                duration_s: Some(25.0),
                print_status: false,
                stop: None,
            },
            |_| {},
        )
        .unwrap();
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(probe_reads(port)["ok"], true, "answers before the flood");
    let original = set_nofile(4096);

    // Two floods of 1,100 held sockets: the cap closes the excess at once,
    // the idle timeout frees the 16 served, and a new client is answered
    // while the flood still holds its sockets.
    for round in 0..2 {
        let (held, failed) = flood(port, 1100);
        assert_eq!(
            failed, 0,
            "round {round}: the host could not open the flood"
        );
        std::thread::sleep(Duration::from_millis(1500));
        let r = probe_reads(port);
        assert_eq!(
            r["ok"], true,
            "round {round}: not answering during the flood: {r}"
        );
        drop(held);
    }
    let refused = board.stats.refused_connections.load(Ordering::Relaxed);
    let peak = board.stats.peak_connections.load(Ordering::Relaxed);
    assert_eq!(peak, 16, "served at once: at most the cap");
    // The idle timeout frees slots during a round, so a few dozen more
    // than 16 are served per round.
    assert!(refused >= 1100, "refused {refused}");

    // Out of descriptors: accept fails (EMFILE) while the flood lasts; the
    // server keeps retrying and answers once descriptors are free again.
    set_nofile(open_fds() + 40);
    let (held, _) = flood(port, 200);
    std::thread::sleep(Duration::from_millis(500));
    let accept_errors = board.stats.accept_errors.load(Ordering::Relaxed);
    drop(held);
    set_nofile(original.max(1024));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        accept_errors > 0,
        "the flood never exhausted the descriptors"
    );
    assert_eq!(probe_reads(port)["ok"], true, "answers after EMFILE");
    handle.join().unwrap();
    bms_e2e::faults::row(bms_e2e::faults::untimed(
        "Modbus: two floods of 1,100 sockets, then out of descriptors",
        "at most max_connections served, the rest closed; accept errors retried; still answering",
        format!(
            "peak {peak} served, {refused} refused, {accept_errors} accept errors; answered after each"
        ),
        0,
    ));
}
