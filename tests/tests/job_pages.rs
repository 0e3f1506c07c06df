//! The application UI's job pages: a job is listed by its action's call
//! site, and its page draws the job's stage graph with skipped stages
//! greyed.

use ember_driver::prelude::*;

#[test]
fn the_job_page_names_the_call_site_and_draws_the_stage_graph() {
    let ctx = Context::builder()
        .master("local[2]")
        .conf("ember.ui.port", "0")
        .build()
        .unwrap();
    let ui = ctx.ui_url().expect("the application UI runs");
    let sums = ctx
        .range(0, 100, 1, 4)
        .unwrap()
        .map(|x| (x % 3, x))
        .reduce_by_key(|a, b| a + b);
    sums.count().unwrap();
    // The second job finds the map stage's outputs: it skips that stage.
    let line = line!() + 1;
    sums.collect().unwrap();
    let get = |path: &str| {
        let (status, body) =
            ember_driver::ui::http::get(ui.trim_start_matches("http://"), path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let jobs = get("/jobs/");
    let site = format!("collect at job_pages.rs:{line}");
    assert!(jobs.contains(&site), "{jobs}");
    let page = get("/jobs/job/?id=1");
    assert!(page.contains(&site), "{page}");
    let svg = &page[page.find("<svg").expect("a stage graph")..];
    assert!(svg.contains("Stage 0 (skipped)"), "{svg}");
    assert!(svg.contains("Stage 2 (succeeded)"), "{svg}");
    assert_eq!(svg.matches("<line").count(), 1, "one shuffle: {svg}");
    assert!(
        svg.contains("(rdd 0)"),
        "the map stage lists its RDDs: {svg}"
    );
}
