//! Column names of streams. A DataFusion plan node's columns are qualified (`a.id`, `b.id`);
//! a Weir stream's are plain and unique. A stream's names are its plan node's unqualified
//! names, with a repeated name taking a number as Flink's planner does (`id`, `id0`, `id1`),
//! and a column reference is resolved through its position in the node's schema.

use std::collections::HashSet;

use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{Column, DFSchema};
use datafusion_expr::Expr;

/// The stream column names of a plan node with schema `schema`, in order.
pub fn physical_names(schema: &DFSchema) -> Vec<String> {
    let all: HashSet<&String> = schema.fields().iter().map(|f| f.name()).collect();
    let mut used: HashSet<String> = HashSet::new();
    schema
        .fields()
        .iter()
        .map(|f| {
            let base = f.name();
            // The name itself unless taken; then the first `name<n>` no column has.
            let mut name = base.clone();
            let mut number = 0;
            while used.contains(&name) || (name != *base && all.contains(&name)) {
                name = format!("{base}{number}");
                number += 1;
            }
            used.insert(name.clone());
            name
        })
        .collect()
}

/// `expr` over the plan node of schema `schema`, with every column reference replaced by the
/// stream column it names. A column the schema does not have (a window TVF's own columns)
/// keeps its plain name.
pub fn resolve(expr: &Expr, schema: &DFSchema) -> Expr {
    let names = physical_names(schema);
    expr.clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => {
                    let name = match schema.maybe_index_of_column(&c) {
                        Some(i) => names[i].clone(),
                        None => c.name,
                    };
                    Transformed::yes(Expr::Column(Column::new_unqualified(name)))
                }
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| expr.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};
    use datafusion_common::TableReference;
    use std::sync::Arc;

    fn schema() -> DFSchema {
        let field = |q: &str, n: &str| {
            (
                Some(TableReference::bare(q)),
                Arc::new(Field::new(n, DataType::Int64, true)),
            )
        };
        DFSchema::new_with_metadata(
            vec![
                field("a", "id"),
                field("a", "id0"),
                field("b", "id"),
                field("b", "v"),
            ],
            Default::default(),
        )
        .unwrap()
    }

    #[test]
    fn repeated_names_are_numbered_as_flink_does() {
        assert_eq!(physical_names(&schema()), vec!["id", "id0", "id1", "v"]);
    }

    #[test]
    fn qualified_references_resolve_to_their_column() {
        let expr = Expr::Column(Column::new(Some("b"), "id"));
        assert_eq!(resolve(&expr, &schema()).to_string(), "id1");
        let expr = Expr::Column(Column::new(Some("a"), "id"));
        assert_eq!(resolve(&expr, &schema()).to_string(), "id");
    }
}
