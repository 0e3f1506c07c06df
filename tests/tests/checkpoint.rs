//! Checkpoints cut lineage and survive recomputation.

use ember_driver::prelude::*;

/// One pagerank-style iteration: join with the links, spread, sum.
fn iterate(links: &Rdd<(u64, Vec<u64>)>, ranks: &Rdd<(u64, f64)>) -> Rdd<(u64, f64)> {
    links
        .join(ranks)
        .values()
        .flat_map(|(urls, rank): (Vec<u64>, f64)| {
            let share = rank / urls.len() as f64;
            urls.into_iter().map(move |u| (u, share))
        })
        .reduce_by_key(|a, b| a + b)
        .map_values(|s| 0.15 + 0.85 * s)
}

fn graph(ctx: &Context) -> Rdd<(u64, Vec<u64>)> {
    let edges: Vec<(u64, u64)> = (0..60u64)
        .flat_map(|i| [(i, (i * 7 + 1) % 60), (i, (i * 13 + 5) % 60)])
        .collect();
    ctx.parallelize(edges, 4).unwrap().group_by_key().cache()
}

#[test]
fn checkpointing_every_few_iterations_keeps_tasks_from_growing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::new("local[2]").unwrap();
    ctx.set_checkpoint_dir(dir.path()).unwrap();
    let links = graph(&ctx);
    let mut ranks = links.map_values(|_| 1.0f64);
    let mut sizes = Vec::new();
    for i in 1..=100 {
        ranks = iterate(&links, &ranks);
        if i % 10 == 0 {
            ranks.checkpoint().unwrap();
            // The checkpoint job computed the last ten iterations.
            let r = ctx.job_reports().last().cloned().unwrap();
            sizes.push((r.max_stage_nodes, r.max_stage_bytes));
        }
    }
    println!("every 10 iterations, (nodes, bytes) of the largest shipped stage: {sizes:?}");
    assert!(ranks.is_checkpointed());
    let (first, last) = (sizes[1], *sizes.last().unwrap());
    assert_eq!(
        first.0, last.0,
        "the pipeline must not grow with iterations: {sizes:?}"
    );
    // Ids take a few more bytes as they grow; the lineage does not.
    assert!(last.1 <= first.1 + 16, "task size must not grow: {sizes:?}");
    assert!(last.0 < 20, "lineage stays short: {last:?}");
    // The same ranks as an uncheckpointed computation.
    let mut plain = links.map_values(|_| 1.0f64);
    for _ in 0..100 {
        plain = iterate(&links, &plain);
        plain = ctx.parallelize(plain.collect().unwrap(), 4).unwrap();
    }
    let mut a = ranks.collect().unwrap();
    let mut b = plain.collect().unwrap();
    a.sort_by_key(|p| p.0);
    b.sort_by_key(|p| p.0);
    assert_eq!(a.len(), b.len());
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert!((va - vb).abs() < 1e-9, "{ka}: {va} vs {vb}");
    }
}

#[test]
fn a_checkpointed_rdd_is_read_back_not_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::new("local-cluster[2,1,512]").unwrap();
    ctx.set_checkpoint_dir(dir.path()).unwrap();
    let computed = ctx.accumulator(0u64);
    let rdd = ctx.parallelize((0..100u64).collect(), 4).unwrap().map_with(
        computed.clone(),
        |acc: &Accumulator<u64>, x: u64| {
            acc.add(1);
            x * 2
        },
    );
    rdd.checkpoint().unwrap();
    assert_eq!(computed.value(), 100);
    let files = std::fs::read_dir(dir.path().join(format!("rdd-{}", rdd.id().0)))
        .unwrap()
        .count();
    assert_eq!(files, 4, "one file per partition, no temporaries");
    assert_eq!(
        rdd.map(|x| x + 1).collect().unwrap(),
        (0..100u64).map(|x| x * 2 + 1).collect::<Vec<_>>()
    );
    assert_eq!(
        computed.value(),
        100,
        "read from the checkpoint, not recomputed"
    );
}

#[test]
fn checkpoint_without_a_folder_says_what_to_do() {
    let ctx = Context::new("local[1]").unwrap();
    let err = ctx
        .parallelize(vec![1u8], 1)
        .unwrap()
        .checkpoint()
        .unwrap_err();
    assert!(err.to_string().contains("set_checkpoint_dir"), "{err}");
}

#[test]
fn a_local_checkpoint_cuts_the_lineage_too() {
    let ctx = Context::new("local[2]").unwrap();
    let rdd = ctx
        .range(0, 50, 1, 3)
        .unwrap()
        .map(|x| (x % 5, x))
        .reduce_by_key(|a, b| a + b);
    rdd.local_checkpoint().unwrap();
    assert!(rdd.is_checkpointed());
    let mut v = rdd.collect().unwrap();
    v.sort();
    assert_eq!(
        v,
        (0..5i64)
            .map(|k| (k, (0..50).filter(|x| x % 5 == k).sum()))
            .collect::<Vec<_>>()
    );
    let report = ctx.job_reports().last().cloned().unwrap();
    assert_eq!(
        report.stages_run.len(),
        1,
        "only the result stage: {report:?}"
    );
}
