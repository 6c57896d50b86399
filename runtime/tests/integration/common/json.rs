//! Arbitrary JSON for property tests.

use proptest::prelude::*;
use serde_json::{json, Value};

/// Any JSON value: numbers of any size and sign, strings with escapes and
/// characters beyond ASCII, nesting; objects' names drawn from `names`.
pub fn any_json(names: impl Strategy<Value = String> + Clone + 'static) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(names.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}
