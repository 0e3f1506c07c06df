use ember_driver::prelude::*;
use std::time::Duration;

#[test]
fn killing_an_executor_between_jobs_recomputes_lost_map_outputs() {
    let ctx = Context::builder()
        .master("local-cluster[3,1,512]")
        .conf("ember.network.timeout", "2s")
        .build()
        .unwrap();
    let pairs = ctx
        .parallelize((0..3000u64).collect(), 6)
        .unwrap()
        .map(|x| (x % 17, x))
        .reduce_by_key(|a, b| a + b);
    let mut first = pairs.collect().unwrap();
    first.sort();
    let pids = ctx.executor_pids();
    assert_eq!(pids.len(), 3);
    std::process::Command::new("kill")
        .arg("-9")
        .arg(pids[0].1.to_string())
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut second = pairs.collect().unwrap();
    second.sort();
    assert_eq!(first, second);
}
