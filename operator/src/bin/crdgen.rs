//! Prints the `StreamJob` CustomResourceDefinition as YAML
//! (`scripts/crdgen.sh` writes it to crds/ and to the Helm chart).

fn main() {
    print!("{}", streamjob_operator::crd::crd_yaml());
}
