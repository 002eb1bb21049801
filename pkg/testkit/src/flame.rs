//! The flame-graph example of `DESIGN.md` §2, the one graph whose wire form
//! the contract spells out number by number.

use ember_proto::querier::v1::{FlameGraph, Level};

/// Returns the flame graph `DESIGN.md` §2 gives for the stacks `a;b;e=1,
/// a;c=2, a;c;d=1`: `names=[total,a,c,d,b,e]`,
/// `levels=[[0,4,0,0],[0,4,0,1],[0,1,0,4,0,3,2,2],[0,1,1,5,2,1,1,3]]`,
/// `total=4`, `max_self=2`.
pub fn design_example() -> FlameGraph {
    let level = |values: &[i64]| Level {
        values: values.to_vec(),
    };
    FlameGraph {
        names: ["total", "a", "c", "d", "b", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        levels: vec![
            level(&[0, 4, 0, 0]),
            level(&[0, 4, 0, 1]),
            level(&[0, 1, 0, 4, 0, 3, 2, 2]),
            level(&[0, 1, 1, 5, 2, 1, 1, 3]),
        ],
        total: 4,
        max_self: 2,
    }
}
