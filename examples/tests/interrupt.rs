//! Ctrl-C in a driver program: SIGINT to `wordcount` in `local-cluster`
//! mode while its tasks run cancels the job, stops the executor processes
//! and removes the application's folder, and the program exits with code
//! 130 within 2 s.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Process ids whose parent is `parent`, from the process table.
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, not ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Whether process `pid` still runs (a zombie has ended).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// Lines of words, `mib` MiB of them.
fn write_text(path: &Path, mib: usize) {
    let line = "the quick brown fox jumps over the lazy dog again and again\n";
    let block = line.repeat((1 << 20) / line.len());
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for _ in 0..mib {
        f.write_all(block.as_bytes()).unwrap();
    }
    f.flush().unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn sigint_stops_wordcount_executors_and_local_dir_and_exits_130_within_2_s() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("text.txt");
    // Far more than the driver can count before the signal arrives.
    write_text(&input, 400);
    let local = dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wordcount"))
        .args([
            "--master",
            "local-cluster[2,1,512]",
            input.to_str().unwrap(),
        ])
        .env("EMBER_LOCAL_DIR", &local)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both executors registered and the application's folder exists; then
    // tasks run (they start as soon as the executors register).
    let deadline = Instant::now() + Duration::from_secs(30);
    let executors = loop {
        let kids = children(child.id());
        if kids.len() == 2 && !entries(&local).is_empty() {
            break kids;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "wordcount ended before it was interrupted"
        );
        assert!(Instant::now() < deadline, "executors never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "wordcount ended before it was interrupted: make the input larger"
    );
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "wordcount still runs 5 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = sent.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?}: {stderr}");
    let left: Vec<u32> = executors.into_iter().filter(|p| running(*p)).collect();
    assert!(left.is_empty(), "executor processes left: {left:?}");
    assert_eq!(entries(&local), Vec::<String>::new(), "{stderr}");
    // One line says what happened; no panic or error text.
    assert!(stderr.contains("Interrupted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
