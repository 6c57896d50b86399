//! The checked-in CRD (and the chart's copy) is what the Rust types generate.

use streamjob_operator::crd::crd_yaml;

#[test]
fn checked_in_crds_are_current() {
    let generated = crd_yaml();
    // Included at build time, so that cargo rebuilds this test whenever
    // either file changes, wherever the build ran.
    for (file, checked_in) in [
        (
            "crds/streamjob.yaml",
            include_str!("../../crds/streamjob.yaml"),
        ),
        (
            "charts/streamjob-operator/crds/streamjob.yaml",
            include_str!("../../charts/streamjob-operator/crds/streamjob.yaml"),
        ),
    ] {
        assert!(
            checked_in == generated,
            "{file} is stale: run scripts/crdgen.sh and commit the result"
        );
    }
}

#[test]
fn crd_has_the_contracted_names_and_columns() {
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml()).unwrap();
    assert_eq!(crd["spec"]["group"], "streamjob.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "sj");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase",
            "Parallelism",
            "Pods",
            "Last checkpoint",
            "Age",
            "Last savepoint"
        ]
    );
    // Only with `-o wide`.
    let wide: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"] == 1)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(wide, ["Last savepoint"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["parallelism"]["minimum"].as_f64(),
        Some(1.0)
    );
    assert_eq!(spec["properties"]["pods"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(spec["properties"]["pods"]["default"], 1);
    assert_eq!(
        spec["properties"]["upgradeMode"]["enum"],
        serde_json::json!(["savepoint", "last-state", "stateless"])
    );
    let rules = version["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 4);
}
