//! `streamjob-operator render`: the objects for a StreamJob, printed
//! without a cluster, and refused as the operator would refuse them.

use std::process::Command;

use serde_yaml::Value;

fn render(file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_streamjob-operator"))
        .arg("render")
        .arg(file)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn render_prints_the_objects_the_operator_applies() {
    // Read when the test runs (cargo sets it then too): a test binary
    // built in another checkout still reads this one's files.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    let example =
        std::path::Path::new(&manifest_dir).join("../examples/streamjob-visit-counter.yaml");
    let operator =
        r#"[{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "streamjob-operator"}}}]"#;
    let out = render(&example, &["--control-clients", operator]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects: Vec<Value> = stdout
        .split("---\n")
        .map(|doc| serde_yaml::from_str(doc).unwrap())
        .collect();
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Service",
            "Secret",
            "NetworkPolicy",
            "StatefulSet"
        ]
    );
    let names: Vec<&str> = objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "visit-counter-job",
            "visit-counter",
            "visit-counter-control",
            "visit-counter-control",
            "visit-counter"
        ]
    );
    // The job file is a runtime job; the Secret carries no token.
    let job_file = objects[0]["data"]["job.yaml"].as_str().unwrap();
    streamjob_spec::JobSpec::from_yaml(job_file).unwrap();
    assert!(objects[2].get("data").is_none());
    assert_eq!(
        objects[3]["spec"]["ingress"][0]["ports"][0]["port"].as_i64(),
        Some(8081)
    );
    let pod = &objects[4]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--control-token-file"), "{args:?}");

    // Without --control-clients, no NetworkPolicy.
    let out = render(&example, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!stdout.contains("kind: NetworkPolicy"), "{stdout}");
}

#[test]
fn render_refuses_what_the_operator_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let example = include_str!("../../examples/streamjob-visit-counter.yaml");
    let file = dir.path().join("job.yaml");
    let with_secret = example.replacen(
        "        topic: visits_counter\n",
        "        topic: visits_counter\n        properties: {sasl.password: hunter2}\n",
        1,
    );
    assert_ne!(with_secret, example);
    std::fs::write(&file, &with_secret).unwrap();
    let out = render(&file, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{with_secret}");
    assert!(
        stderr.contains(
            "spec.pipeline.sink.kafka.properties.sasl.password: sasl.password is written in the job"
        ),
        "{stderr}"
    );
}
