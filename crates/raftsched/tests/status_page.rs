//! Goal: an operator opens `http://REPLICA/` (the `--http` port) in a browser and sees the cluster:
//! which replica leads, the workers, and the tasks. Checked in a real headless browser (Debian's
//! chromium, installed by `scripts/ensure-chromium.sh` when missing and root), which runs the
//! page's script and dumps the DOM it built.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The browser, installing it when missing (as root); `None` (with the reason printed) otherwise.
fn chromium() -> Option<PathBuf> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/ensure-chromium.sh");
    let out = Command::new("bash").arg(script).output().expect("run ensure-chromium.sh");
    if !out.status.success() {
        eprintln!("skipping the browser test: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The DOM of `url` after its scripts ran (chromium's virtual time lets the fetch finish).
fn dump_dom(browser: &PathBuf, url: &str, profile: &std::path::Path) -> String {
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", url])
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_leader_workers_and_tasks_in_a_browser() {
    let Some(browser) = chromium() else { return };
    let mut cluster = Cluster::start_with_http(3, &[]);
    let leader = cluster.leader().await;
    cluster.start_worker("page-worker", &["--slots", "3", "--labels", "zone=blue"]);
    let task = cluster.client().submit("shown-in-the-browser", echo("hi")).await.unwrap();
    // Read the page from a follower: any replica shows the whole cluster.
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    let url = format!("http://{}/", cluster.http(follower));
    let profile = cluster.dir.path().join("chromium-profile");
    // The leader as of each look: a loaded machine may move leadership meanwhile (the page
    // must show whoever leads then).
    let leader_row_of =
        |id: u64, addr: String| format!("<tr><td>{id}</td><td>{addr}</td><td class=\"leader\">leader</td>");
    let mut leader_row = leader_row_of(leader, cluster.addr(leader));
    let task_row = format!("<tr><td><a class=\"id\">{}</a></td><td>shown-in-the-browser</td>", task.id);
    let worker_row = "<tr><td>page-worker</td>";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut dom = String::new();
    while Instant::now() < deadline {
        dom = dump_dom(&browser, &url, &profile);
        let now = cluster.leader().await;
        leader_row = leader_row_of(now, cluster.addr(now));
        if dom.contains(&leader_row) && dom.contains(&task_row) && dom.contains(worker_row) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(dom.contains(&leader_row), "no leader row {leader_row:?} in:\n{dom}\n{}", cluster.logs());
    assert!(dom.contains(&task_row), "no task row {task_row:?} in:\n{dom}");
    assert!(dom.contains(worker_row), "no worker row in:\n{dom}");
    assert!(dom.contains(&format!("seen from replica {follower}")), "{dom}");

    // The task view (a row's id, or `#task=ID` in the address): its attempts with the worker, and
    // its output; the list filtered by state (`#state=...`) and the worker's labels.
    let task_url = format!("{url}#task={}&state=succeeded", task.id);
    let attempt_row = "<td>1</td><td>page-worker</td>";
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        dom = dump_dom(&browser, &task_url, &profile);
        if dom.contains(attempt_row) && dom.contains("<pre id=\"output\">hi") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(dom.contains("<table id=\"attempts\">") && dom.contains(attempt_row), "no attempt row in:\n{dom}");
    assert!(dom.contains("<pre id=\"output\">hi"), "no output in:\n{dom}");
    let whole = format!("href=\"/v1/tasks/{}/output?attempt=1&amp;stream=stdout\"", task.id);
    assert!(dom.contains(&whole), "no link to the whole output ({whole}) in:\n{dom}");
    assert!(dom.contains(&task_row), "the succeeded filter lost the task:\n{dom}");
    assert!(dom.contains("class=\"on\">succeeded: 1</a>"), "the filter is not shown as on:\n{dom}");
    assert!(dom.contains("<td>zone=blue</td>"), "no worker labels in:\n{dom}");
}
