//! Order enrichment: orders joined with the latest user and item from
//! changelogs, unmatched orders to their side output with the reason, the
//! tables restored from checkpoints, and exactly-once output across kills.
//! Expected outputs come from a model of the join over the same input.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};
use streamjob_runtime::{run, JobSpec};

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn values(path: &Path) -> Vec<Value> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A changelog file as a table: the last record per `id` wins.
fn table(path: &Path) -> BTreeMap<String, Value> {
    values(path)
        .into_iter()
        .map(|v| (v["id"].to_string(), v))
        .collect()
}

/// Copies examples/orders into `dir/orders` and writes `example` (a file
/// of examples/) there with its stdout sink writing `out.jsonl` instead.
fn example_job(dir: &Path, example: &str) -> JobSpec {
    let examples = common::repo_root().join("examples");
    std::fs::create_dir_all(dir.join("orders")).unwrap();
    for file in ["orders.jsonl", "users.jsonl", "items.jsonl"] {
        std::fs::copy(
            examples.join("orders").join(file),
            dir.join("orders").join(file),
        )
        .unwrap();
    }
    let yaml = std::fs::read_to_string(examples.join(example))
        .unwrap()
        .replace("sink:\n  stdout: {}", "sink:\n  file: {path: out.jsonl}");
    assert!(yaml.contains("out.jsonl"));
    JobSpec::from_yaml(&yaml).unwrap()
}

/// The example job as written in examples/: every order with a known user
/// and item comes out with their latest fields (a user's second record
/// replaces the first); each other order goes to the unmatched output
/// once, saying which lookup missed.
#[test]
fn the_order_enrichment_example_enriches_orders_and_reports_the_unmatched() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_job(dir.path(), "order-enrichment.yaml");
    let summary = run(&spec, &common::opts(dir.path())).unwrap();

    let users = table(&dir.path().join("orders/users.jsonl"));
    let items = table(&dir.path().join("orders/items.jsonl"));
    let mut expected = Vec::new();
    let mut unmatched = Vec::new();
    for order in values(&dir.path().join("orders/orders.jsonl")) {
        let (user, item) = (order["user_id"].to_string(), order["item_id"].to_string());
        match (users.get(&user), items.get(&item)) {
            (Some(u), Some(i)) => expected.push(json!({
                "invoice_id": order["invoice_id"],
                "line_item_id": order["line_item_id"],
                "user.email": u["email"],
                "item.name": i["name"],
                "item.price": i["price"],
                "quantity": order["quantity"],
            })),
            (None, _) => unmatched.push(format!("no user with id {user}")),
            (_, None) => unmatched.push(format!("no item with id {item}")),
        }
    }
    assert_eq!(values(&dir.path().join("out.jsonl")), expected);
    let side = values(&dir.path().join("orders-unmatched.jsonl"));
    let reasons: Vec<&str> = side.iter().map(|v| v["error"].as_str().unwrap()).collect();
    assert_eq!(reasons, unmatched);
    assert_eq!(
        reasons,
        ["no item with id 930", "no user with id 182477"],
        "the example has one order of each kind of miss"
    );
    assert_eq!(side[0]["source"], "orders.jsonl:6");
    // The user's updated email, not the first one.
    assert!(expected
        .iter()
        .any(|o| o["user.email"] == "s.adebayo@example.org"));
    assert_eq!((summary.results, summary.unmatched), (6, 2));
}

/// A changelog record that cannot be read goes to the malformed output once
/// (though every worker reads the changelog), with why and where; the rest
/// of the changelog still builds the table.
#[test]
fn a_changelog_record_that_cannot_be_read_is_malformed_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = example_job(dir.path(), "order-enrichment.yaml");
    let users = dir.path().join("orders/users.jsonl");
    let mut text = std::fs::read_to_string(&users).unwrap();
    let lines = text.lines().count();
    text.push_str("{\"first_name\": \"No id\"}\nnot json\n");
    std::fs::write(&users, text).unwrap();
    spec.parallelism = 2;
    spec.side_outputs.malformed =
        Some(serde_json::from_value(json!({"file": {"path": "malformed.jsonl"}})).unwrap());
    let summary = run(&spec, &common::opts(dir.path())).unwrap();
    let malformed = values(&dir.path().join("malformed.jsonl"));
    let got: Vec<(&str, &str)> = malformed
        .iter()
        .map(|m| (m["source"].as_str().unwrap(), m["error"].as_str().unwrap()))
        .collect();
    let (first, second) = (
        format!("users.jsonl:{}", lines + 1),
        format!("users.jsonl:{}", lines + 2),
    );
    assert_eq!(
        got,
        [
            (first.as_str(), "missing key field \"id\""),
            (
                second.as_str(),
                "not valid JSON: expected ident at line 1 column 2"
            ),
        ]
    );
    // The orders are enriched as without the two records.
    assert_eq!((summary.results, summary.unmatched), (6, 2));
}

/// Enrichment comes before the key: orders keyed by their item's category
/// (a field of the lookup) and summed per hour, exactly as a model of the
/// join and the windows gives them.
#[test]
fn a_window_keyed_by_an_enriched_field() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_job(dir.path(), "category-revenue.yaml");
    run(&spec, &common::opts(dir.path())).unwrap();

    let items = table(&dir.path().join("orders/items.jsonl"));
    let mut expected: BTreeMap<(String, String), (f64, u64)> = BTreeMap::new();
    for order in values(&dir.path().join("orders/orders.jsonl")) {
        let Some(item) = items.get(&order["item_id"].to_string()) else {
            continue;
        };
        let created = order["created_at"].as_str().unwrap();
        let hour = format!("{}:00:00Z", &created[..13]);
        let e = expected
            .entry((item["category"].as_str().unwrap().into(), hour))
            .or_default();
        e.0 += item["price"].as_f64().unwrap();
        e.1 += 1;
    }
    let got: BTreeMap<(String, String), (f64, u64)> = values(&dir.path().join("out.jsonl"))
        .into_iter()
        .map(|r| {
            let window = (
                r["item.category"].as_str().unwrap().to_string(),
                r["window_start"].as_str().unwrap().to_string(),
            );
            (
                window,
                (r["revenue"].as_f64().unwrap(), r["lines"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    for (window, (revenue, lines)) in &expected {
        let (got_revenue, got_lines) = got[window];
        assert_eq!(got_lines, *lines, "{window:?}");
        assert!(
            (got_revenue - revenue).abs() < 1e-9,
            "{window:?}: {got_revenue} != {revenue}"
        );
    }
}

/// Orders `order_id` 0..n over `files` files, user `order_id % users`.
fn write_orders(dir: &Path, n: u64, files: u64, users: u64) -> Vec<String> {
    let mut text = vec![String::new(); files as usize];
    for id in 0..n {
        text[(id % files) as usize].push_str(&format!(
            "{{\"order_id\": {id}, \"user_id\": {}}}\n",
            id % users
        ));
    }
    (0..files)
        .map(|f| {
            let name = format!("orders-{f}.jsonl");
            std::fs::write(dir.join(&name), &text[f as usize]).unwrap();
            name
        })
        .collect()
}

/// `{"order_id", "user.name"}` for every order, as the job writes them
/// when every user is known with the name `name(user)`.
fn check_every_order_once(out: &Path, n: u64, users: u64, name: impl Fn(u64) -> String) {
    let mut seen = BTreeSet::new();
    for v in values(out) {
        let id = v["order_id"].as_u64().unwrap();
        assert_eq!(v["user.name"], json!(name(id % users)), "order {id}");
        assert!(seen.insert(id), "order {id} written twice");
    }
    assert_eq!(seen.len() as u64, n, "orders missing");
}

/// Runs the job and kills it (`kill -9`) once it has completed a
/// checkpoint, before it finishes.
fn kill_after_first_checkpoint(job: &Path, checkpoints: &Path) {
    let mut child = common::spawn_run(job, &[], &[]);
    let checkpointed = common::wait_until(std::time::Duration::from_secs(60), || {
        !common::checkpoint_ids(checkpoints, true).is_empty()
    });
    assert!(checkpointed, "no checkpoint completed");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job finished before the kill: give it more input"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// After a kill -9, the restored job takes its lookup table from the
/// checkpoint and reads the changelog on from the checkpoint's position,
/// not from its start: the users file is emptied before the restore, and
/// every order still finds its user (rebuilt from the emptied file, none
/// would). The output stays exactly once.
#[test]
fn a_restored_table_comes_from_the_checkpoint_not_the_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let (n, users) = (200_000, 1_000);
    let files = write_orders(dir.path(), n, 2, users);
    let name = |u: u64| format!("user {u:04} as first registered");
    let changelog: String = (0..users)
        .map(|u| format!("{}\n", json!({"id": u, "name": name(u), "tier": "gold"})))
        .collect();
    std::fs::write(dir.path().join("users.jsonl"), changelog).unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: enrich-restore
parallelism: 2
source: {{file: {{paths: {files:?}}}}}
enrich:
  - {{name: user, from: {{file: {{path: users.jsonl}}}}, key: id, on: user_id, fields: [name]}}
select: [order_id, user.name]
sink: {{file: {{path: out.jsonl}}}}
sideOutputs: {{unmatched: {{file: {{path: unmatched.jsonl}}}}}}
checkpoints: {{interval: 50ms, storage: \"file://ckpt\"}}
"
        ),
    )
    .unwrap();
    let checkpoints = dir.path().join("ckpt/enrich-restore/checkpoints");
    kill_after_first_checkpoint(&job, &checkpoints);
    let newest = *common::checkpoint_ids(&checkpoints, true).last().unwrap();
    for worker in 0..2 {
        let file = checkpoints.join(format!("chk-{newest}/worker-{worker}.lookups"));
        assert!(file.is_file(), "{} holds the table", file.display());
    }

    std::fs::write(dir.path().join("users.jsonl"), "").unwrap();
    let (ok, stderr) = common::run_to_end(&job, &["--from-latest-checkpoint"], &[]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("built again"), "{stderr}");
    check_every_order_once(&dir.path().join("out.jsonl"), n, users, name);
    assert_eq!(
        lines(&dir.path().join("unmatched.jsonl")),
        Vec::<String>::new()
    );
}

/// Stop-with-savepoint (how the operator upgrades a job) writes each
/// worker's tables in full; a job started from the savepoint takes them
/// from there: the users file is emptied before it, every order still finds
/// its user, and each is written exactly once.
#[test]
fn a_savepoint_holds_the_tables_in_full() {
    use streamjob_runtime::control::{JobControl, SavepointRequest};
    let dir = tempfile::tempdir().unwrap();
    let (n, users) = (300_000, 500);
    let files = write_orders(dir.path(), n, 2, users);
    let name = |u: u64| format!("user {u:04} before the savepoint");
    let changelog: String = (0..users)
        .map(|u| format!("{}\n", json!({"id": u, "name": name(u)})))
        .collect();
    std::fs::write(dir.path().join("users.jsonl"), changelog).unwrap();
    let spec = JobSpec::from_yaml(&format!(
        "name: enrich-savepoint
parallelism: 2
source: {{file: {{paths: {files:?}}}}}
enrich:
  - {{name: user, from: {{file: {{path: users.jsonl}}}}, key: id, on: user_id}}
select: [order_id, user.name]
sink: {{file: {{path: out.jsonl}}}}
checkpoints: {{interval: 1h, storage: \"file://ckpt\"}}
"
    ))
    .unwrap();
    let control = JobControl::new(&spec.name, 2);
    let mut opts = common::opts(dir.path());
    opts.control = Some(control.clone());
    let job = {
        let (spec, opts) = (spec.clone(), opts.clone());
        std::thread::spawn(move || run(&spec, &opts))
    };
    // Orders are read only once the tables have caught up.
    let reading = common::wait_until(std::time::Duration::from_secs(30), || {
        control.metrics.records_in.get() > 0
    });
    assert!(reading, "the job read no orders");
    let (reply, id) = tokio::sync::oneshot::channel();
    control.request_savepoint(SavepointRequest {
        then_stop: true,
        reply,
    });
    let id = id.blocking_recv().unwrap().unwrap();
    let first = job.join().unwrap().unwrap();
    assert!(
        first.records_in < n,
        "the job finished before the savepoint: give it more input"
    );
    let savepoint = dir
        .path()
        .join(format!("ckpt/enrich-savepoint/savepoints/sp-{id}"));
    assert!(
        savepoint.join("_metadata").is_file(),
        "savepoint {id} completed"
    );
    for worker in 0..2 {
        assert!(savepoint.join(format!("worker-{worker}.lookups")).is_file());
    }

    std::fs::write(dir.path().join("users.jsonl"), "").unwrap();
    opts.control = None;
    opts.restore = Some(streamjob_runtime::RestoreFrom::Path(savepoint));
    let second = run(&spec, &opts).unwrap();
    assert_eq!(second.unmatched, 0);
    check_every_order_once(&dir.path().join("out.jsonl"), n, users, name);
}

/// A lookup whose kept fields changed cannot use the snapshot's table (its
/// entries lack the new field): it is built again from its changelog, and
/// the run says so. Orders after the restore carry the new field.
#[test]
fn a_table_built_another_way_is_built_again_from_its_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let (n, users) = (200_000, 10);
    let files = write_orders(dir.path(), n, 1, users);
    let changelog: String = (0..users)
        .map(|u| {
            format!(
                "{}\n",
                json!({"id": u, "name": format!("n{u}"), "tier": format!("t{u}")})
            )
        })
        .collect();
    std::fs::write(dir.path().join("users.jsonl"), changelog).unwrap();
    let job = dir.path().join("job.yaml");
    let write_job = |fields: &str, select: &str| {
        let yaml = format!(
            "name: rebuild
source: {{file: {{paths: {files:?}}}}}
enrich:
  - {{name: user, from: {{file: {{path: users.jsonl}}}}, key: id, on: user_id, fields: {fields}}}
select: [order_id, {select}]
sink: {{file: {{path: out.jsonl}}}}
checkpoints: {{interval: 50ms, storage: \"file://ckpt\"}}
"
        );
        std::fs::write(&job, yaml).unwrap();
    };
    write_job("[name]", "user.name");
    let checkpoints = dir.path().join("ckpt/rebuild/checkpoints");
    kill_after_first_checkpoint(&job, &checkpoints);

    write_job("[name, tier]", "user.tier");
    let (ok, stderr) = common::run_to_end(&job, &["--from-latest-checkpoint"], &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("lookup table user was built with key \"id\", fields [\"name\"], from file \"users.jsonl\", the job has key \"id\", fields [\"name\", \"tier\"], from file \"users.jsonl\": it is built again from its changelog"),
        "{stderr}"
    );
    let mut seen = BTreeSet::new();
    let mut after_restore = 0;
    for v in values(&dir.path().join("out.jsonl")) {
        let id = v["order_id"].as_u64().unwrap();
        let user = id % users;
        if v.get("user.tier").is_some() {
            assert_eq!(v["user.tier"], json!(format!("t{user}")), "order {id}");
            after_restore += 1;
        } else {
            assert_eq!(v["user.name"], json!(format!("n{user}")), "order {id}");
        }
        assert!(seen.insert(id), "order {id} written twice");
    }
    assert_eq!(seen.len() as u64, n, "orders missing");
    assert!(after_restore > 0, "the restored run wrote nothing");
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

/// Sends `payload` (None: a tombstone) with `key` to `topic`.
fn send(producer: &BaseProducer, topic: &str, partition: i32, key: &str, payload: Option<&str>) {
    loop {
        let mut record = BaseRecord::<str, str>::to(topic)
            .partition(partition)
            .key(key);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        match producer.send(record) {
            Ok(()) => return,
            Err(_) => {
                producer.poll(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// Order enrichment on Kafka: users and items changelog topics (a user renamed, a
/// user deleted by a tombstone) and 240,000 orders in 4 partitions; the job
/// is killed five times, each 0–150 ms after a checkpoint of its own run,
/// and restored. Every order with a live user and a known item is in the
/// exactly-once output once, with the user's latest name; the deleted
/// user's and the unknown item's orders are unmatched.
#[test]
fn order_enrichment_on_kafka_exactly_once_across_kills() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("orders", 4, 1).unwrap();
    cluster.create_topic("users", 2, 1).unwrap();
    cluster.create_topic("items", 1, 1).unwrap();
    let p = producer(&bootstrap);
    let (users, items, n) = (100u64, 20u64, 240_000u64);
    for u in 0..users {
        let user = json!({"id": u, "name": format!("first-{u}")}).to_string();
        send(&p, "users", (u % 2) as i32, &u.to_string(), Some(&user));
    }
    // User 7 renamed, user 13 deleted.
    let renamed = json!({"id": 7, "name": "renamed-7"}).to_string();
    send(&p, "users", 1, "7", Some(&renamed));
    send(&p, "users", 1, "13", None);
    // Items 0..items-1 exist; orders also name item `items` (unknown).
    for i in 0..items {
        let item = json!({"id": format!("i{i}"), "category": format!("c{}", i % 3)}).to_string();
        send(&p, "items", 0, &format!("i{i}"), Some(&item));
    }
    for id in 0..n {
        let order = json!({
            "order_id": id,
            "user_id": id % users,
            "item_id": format!("i{}", id % (items + 1)),
        })
        .to_string();
        send(&p, "orders", (id % 4) as i32, "", Some(&order));
    }
    p.flush(std::time::Duration::from_secs(30)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    let kafka = |topic: &str| {
        format!("{{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [{topic}]}}}}")
    };
    std::fs::write(
        &job,
        format!(
            "name: order-enrichment
parallelism: 2
source: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [orders], bounded: true}}}}
enrich:
  - {{name: user, from: {}, key: id, on: user_id, fields: [name]}}
  - {{name: item, from: {}, key: id, on: item_id}}
select: [order_id, user.name, item.category]
sink: {{file: {{path: out.jsonl}}}}
sideOutputs: {{unmatched: {{file: {{path: unmatched.jsonl}}}}}}
checkpoints: {{interval: 100ms, storage: \"file://ckpt\"}}
",
            kafka("users"),
            kafka("items"),
        ),
    )
    .unwrap();
    common::kill_after_checkpoints(
        &job,
        &dir.path().join("ckpt/order-enrichment/checkpoints"),
        5,
    );

    let mut seen = BTreeSet::new();
    for v in values(&dir.path().join("out.jsonl")) {
        let id = v["order_id"].as_u64().unwrap();
        let (user, item) = (id % users, id % (items + 1));
        assert!(
            user != 13 && item != items,
            "order {id} has no user or item"
        );
        let name = if user == 7 {
            "renamed-7".to_string()
        } else {
            format!("first-{user}")
        };
        assert_eq!(v["user.name"], json!(name), "order {id}");
        assert_eq!(
            v["item.category"],
            json!(format!("c{}", item % 3)),
            "order {id}"
        );
        assert!(seen.insert(id), "order {id} written twice");
    }
    let matched = (0..n)
        .filter(|id| id % users != 13 && id % (items + 1) != items)
        .count();
    assert_eq!(seen.len(), matched, "orders missing");
    // Side outputs are at-least-once: a restore may repeat some.
    let unmatched: BTreeSet<String> = values(&dir.path().join("unmatched.jsonl"))
        .into_iter()
        .map(|v| v["error"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        unmatched,
        BTreeSet::from([
            "no user with id 13".to_string(),
            format!("no item with id \"i{items}\""),
        ])
    );
}

/// A Kafka changelog is followed while the job runs: once a user's update
/// has been read, every later order sees it; once a tombstone has been
/// read, the user's orders are unmatched. (Which order is the first to see
/// a change depends on when the job reads the changelog; so each change is
/// waited for with probe orders, and the orders after it are checked.)
#[test]
fn a_followed_changelog_updates_and_deletes_entries_while_the_job_runs() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    for topic in ["orders", "users", "out", "unmatched"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let p = producer(&bootstrap);
    send(&p, "users", 0, "1", Some(r#"{"id": 1, "name": "first"}"#));
    p.flush(std::time::Duration::from_secs(10)).unwrap();
    let spec = JobSpec::from_yaml(&format!(
        "name: follow
source: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [orders]}}}}
enrich:
  - {{name: user, from: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [users]}}}}, key: id, on: user_id}}
select: [order_id, user.name]
sink: {{kafka: {{bootstrapServers: \"{bootstrap}\", topic: out}}}}
sideOutputs: {{unmatched: {{kafka: {{bootstrapServers: \"{bootstrap}\", topic: unmatched}}}}}}
"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = common::opts(dir.path());
    let stop = opts.stop.clone();
    let job = std::thread::spawn(move || run(&spec, &opts));

    // What the job made of order `id`: the user's name, or the unmatched
    // reason; read from both topics by one consumer as they come.
    let reader: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "probe-reader")
        .create()
        .unwrap();
    let mut topics = rdkafka::TopicPartitionList::new();
    for topic in ["out", "unmatched"] {
        topics
            .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .unwrap();
    }
    rdkafka::consumer::Consumer::assign(&reader, &topics).unwrap();
    let mut seen: BTreeMap<u64, Result<String, String>> = BTreeMap::new();
    let mut next_id = 0;
    let mut probe = |p: &BaseProducer| -> Result<String, String> {
        let id = next_id;
        next_id += 1;
        send(
            p,
            "orders",
            0,
            "",
            Some(&json!({"order_id": id, "user_id": 1}).to_string()),
        );
        p.flush(std::time::Duration::from_secs(10)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !seen.contains_key(&id) {
            assert!(
                std::time::Instant::now() < deadline,
                "order {id} never came out"
            );
            let Some(message) = reader.poll(std::time::Duration::from_millis(50)) else {
                continue;
            };
            let message = message.unwrap();
            let payload = rdkafka::message::Message::payload(&message).unwrap();
            let v: Value = serde_json::from_slice(payload).unwrap();
            if rdkafka::message::Message::topic(&message) == "out" {
                let name = v["user.name"].as_str().unwrap().to_string();
                seen.insert(v["order_id"].as_u64().unwrap(), Ok(name));
            } else {
                let order: Value = serde_json::from_str(v["record"].as_str().unwrap()).unwrap();
                let reason = v["error"].as_str().unwrap().to_string();
                seen.insert(order["order_id"].as_u64().unwrap(), Err(reason));
            }
        }
        seen[&id].clone()
    };
    // Probes until one sees `change`; then the next ones must too.
    let mut until = |p: &BaseProducer, change: Result<String, String>| {
        let mut probes = 0;
        while probe(p) != change {
            probes += 1;
            assert!(probes < 100, "the job never saw {change:?}");
        }
        for _ in 0..3 {
            assert_eq!(probe(p), change, "an order after the change");
        }
    };
    until(&p, Ok("first".into()));
    send(&p, "users", 0, "1", Some(r#"{"id": 1, "name": "second"}"#));
    until(&p, Ok("second".into()));
    send(&p, "users", 0, "1", None);
    until(&p, Err("no user with id 1".into()));

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    job.join().unwrap().unwrap();
}

/// A lookup reads its `on` field from the record's text as the job's other
/// fields are read, or from an earlier lookup's entry; an entry wins over
/// the record's own field of its name. Each record that finds no entry
/// says why, and a record that cannot be read gets the reason serde_json
/// gives. A late record keeps its text with the entries in it.
#[test]
fn lookups_read_their_fields_from_the_record_or_an_earlier_entry() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: &[&str]| {
        std::fs::write(dir.path().join(name), lines.join("\n") + "\n").unwrap();
    };
    write(
        "users.jsonl",
        &[
            r#"{"id": "u1", "name": "Ann", "company_id": 7}"#,
            r#"{"id": 2, "name": "Bo", "company_id": 8}"#,
        ],
    );
    write("companies.jsonl", &[r#"{"id": 7, "name": "Acme"}"#]);
    let malformed_line = r#"{"order": 8, "user_id": "u1","#;
    write(
        "orders.jsonl",
        &[
            r#"{"order": 1, "user_id": "u1", "user": {"name": "not the entry"}}"#,
            r#"{"order": 2, "user_id": "u\u0031"}"#,
            r#"{"order": 3, "user_id": 2.0}"#,
            r#"{"order": 4}"#,
            r#"{"order": 5, "user_id": {"id": 1}}"#,
            r#"{"order": 6, "user_id": "u9"}"#,
            r#"{"order": 7, "user_id": null}"#,
            malformed_line,
            r#"[1, 2]"#,
        ],
    );
    let lookups = "enrich:\n\
        - {name: user, from: {file: {path: users.jsonl}}, key: id, on: user_id}\n\
        - {name: company, from: {file: {path: companies.jsonl}}, key: id, on: user.company_id}\n";
    let select = JobSpec::from_yaml(&format!(
        "name: lk\nsource: {{file: {{path: orders.jsonl}}}}\n{lookups}\
         select: [order, user.name, company.name]\nsink: {{file: {{path: out.jsonl}}}}\n\
         sideOutputs: {{unmatched: {{file: {{path: unmatched.jsonl}}}}, \
         malformed: {{file: {{path: malformed.jsonl}}}}}}\n"
    ))
    .unwrap();
    let summary = run(&select, &common::opts(dir.path())).unwrap();
    assert_eq!(
        (summary.results, summary.unmatched, summary.malformed),
        (2, 5, 2)
    );
    let ann = json!({"user.name": "Ann", "company.name": "Acme"});
    assert_eq!(
        values(&dir.path().join("out.jsonl")),
        [1, 2]
            .map(|order| {
                let mut row = ann.clone();
                row["order"] = json!(order);
                row
            })
            .to_vec()
    );
    let reasons = |file: &str| -> Vec<(String, String)> {
        values(&dir.path().join(file))
            .iter()
            .map(|m| {
                (
                    m["source"].as_str().unwrap().into(),
                    m["error"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let at = |line: usize| format!("orders.jsonl:{line}");
    assert_eq!(
        reasons("unmatched.jsonl"),
        [
            (at(3), "no company with id 8".into()),
            (at(4), "no user: the record has no field \"user_id\"".into()),
            (
                at(5),
                "no user: field \"user_id\" is an object, not a key".into()
            ),
            (at(6), "no user with id \"u9\"".into()),
            (at(7), "no user: the record has no field \"user_id\"".into()),
        ]
    );
    let serde_reason = serde_json::from_str::<Value>(malformed_line).unwrap_err();
    assert_eq!(
        reasons("malformed.jsonl"),
        [
            (at(8), format!("not valid JSON: {serde_reason}")),
            (at(9), "not a JSON object".into()),
        ]
    );

    // Keyed by a field of the second entry; the second record is late.
    write(
        "events.jsonl",
        &[
            r#"{"t": 5000, "user_id": "u1"}"#,
            r#"{"t": 100, "user_id": "u1", "note": "late"}"#,
        ],
    );
    let windowed = JobSpec::from_yaml(&format!(
        "name: lk-late\nsource: {{file: {{path: events.jsonl}}}}\n{lookups}\
         eventTime: {{field: t}}\nwatermark: {{outOfOrderness: 0ms}}\nkey: company.name\n\
         window: {{tumbling: {{size: 1s}}}}\naggregates: [{{name: n, function: count}}]\n\
         sink: {{file: {{path: counts.jsonl}}}}\nsideOutputs: {{late: {{file: {{path: late.jsonl}}}}}}\n"
    ))
    .unwrap();
    let summary = run(&windowed, &common::opts(dir.path())).unwrap();
    assert_eq!((summary.results, summary.late), (1, 1));
    assert_eq!(
        values(&dir.path().join("counts.jsonl"))[0]["company.name"],
        "Acme"
    );
    assert_eq!(
        values(&dir.path().join("late.jsonl")),
        [json!({
            "t": 100, "user_id": "u1", "note": "late",
            "user": {"id": "u1", "name": "Ann", "company_id": 7},
            "company": {"id": 7, "name": "Acme"},
        })]
    );
}
