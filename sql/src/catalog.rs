//! The tables, views and functions a SQL session knows, and DataFusion's view of them
//! ([`SessionContext`] implements DataFusion's `ContextProvider`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef, SchemaRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{plan_datafusion_err, Result as DfResult, TableReference};
use datafusion_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion_expr::{
    AggregateUDF, Expr, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF,
};
use weir_connectors::registry::TableSpec;
use weir_engine::time::WatermarkStrategy;

/// A table declared with `CREATE TABLE`.
#[derive(Debug)]
pub struct Table {
    /// What the connector reads or writes: physical and metadata columns, and the options.
    pub spec: TableSpec,
    /// Every column in declared order, computed ones included: what queries see.
    pub schema: SchemaRef,
    /// Computed columns: name and expression over the connector's columns.
    pub computed: Vec<(String, Expr)>,
    pub watermark: Option<WatermarkStrategy>,
    pub primary_key: Vec<String>,
}

/// A table as DataFusion's planner sees it.
#[derive(Debug)]
pub struct TableRef {
    pub table: Arc<Table>,
}

impl TableSource for TableRef {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.table.schema)
    }
}

/// A view: its (analysed) plan, inlined wherever the view is used.
#[derive(Debug)]
struct ViewRef {
    plan: LogicalPlan,
}

impl TableSource for ViewRef {
    fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.plan))
    }
}

/// Tables, views, functions and options of a session.
pub struct SessionContext {
    pub tables: BTreeMap<String, Arc<Table>>,
    pub views: BTreeMap<String, LogicalPlan>,
    scalar: HashMap<String, Arc<ScalarUDF>>,
    aggregate: HashMap<String, Arc<AggregateUDF>>,
    expr_planners: Vec<Arc<dyn ExprPlanner>>,
    /// The window TVF planner of the statement being planned.
    pub relation_planners: Vec<Arc<dyn RelationPlanner>>,
    options: ConfigOptions,
}

impl std::fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .field("views", &self.views.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for SessionContext {
    fn default() -> Self {
        let mut scalar = HashMap::new();
        // DataFusion's functions, then Weir's Flink functions over those of the same name
        // (Flink's semantics where DataFusion's differ, and Flink's functions it lacks).
        for f in datafusion_functions::all_default_functions()
            .into_iter()
            .chain(crate::functions::weir_functions())
        {
            for name in std::iter::once(f.name()).chain(f.aliases().iter().map(|a| a.as_str())) {
                scalar.insert(name.to_ascii_lowercase(), Arc::clone(&f));
            }
        }
        let mut aggregate = HashMap::new();
        for f in datafusion_functions_aggregate::all_default_aggregate_functions() {
            for name in std::iter::once(f.name()).chain(f.aliases().iter().map(|a| a.as_str())) {
                aggregate.insert(name.to_ascii_lowercase(), Arc::clone(&f));
            }
        }
        // Flink's AVG (an integer column's average is an integer).
        for name in ["avg", "mean"] {
            aggregate.insert(name.into(), crate::functions::avg::avg());
        }
        // Flink's names for DataFusion's aggregates.
        for (flink, datafusion) in [
            ("approx_count_distinct", "approx_distinct"),
            ("variance", "var_samp"),
        ] {
            if let Some(f) = aggregate.get(datafusion).cloned() {
                aggregate.insert(flink.into(), f);
            }
        }
        let expr_planners: Vec<Arc<dyn ExprPlanner>> = vec![
            Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
            Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
            Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
            Arc::new(datafusion_functions_aggregate::planner::AggregateFunctionPlanner),
        ];
        SessionContext {
            tables: BTreeMap::new(),
            views: BTreeMap::new(),
            scalar,
            aggregate,
            expr_planners,
            relation_planners: Vec::new(),
            options: ConfigOptions::default(),
        }
    }
}

impl SessionContext {
    pub fn options(&self) -> &ConfigOptions {
        &self.options
    }

    /// True if a table or view has this name.
    pub fn exists(&self, name: &str) -> bool {
        self.tables.contains_key(name) || self.views.contains_key(name)
    }

    /// True if a scalar or aggregate function has this name (any case).
    pub fn has_function(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.scalar.contains_key(&name)
            || self.aggregate.contains_key(&name)
            || self.get_window_meta(&name).is_some()
    }

    /// Names of tables and views, for "did you mean" hints.
    pub fn names(&self) -> Vec<String> {
        self.tables
            .keys()
            .chain(self.views.keys())
            .cloned()
            .collect()
    }
}

impl ContextProvider for SessionContext {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        let table = name.table();
        if let Some(t) = self.tables.get(table) {
            return Ok(Arc::new(TableRef {
                table: Arc::clone(t),
            }));
        }
        if let Some(plan) = self.views.get(table) {
            return Ok(Arc::new(ViewRef { plan: plan.clone() }));
        }
        let known = self.names();
        Err(plan_datafusion_err!(
            "table or view '{table}' does not exist{}",
            if known.is_empty() {
                " (none is declared yet: CREATE TABLE ... WITH ('connector' = ...))".to_string()
            } else {
                format!(" (known: {})", known.join(", "))
            }
        ))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.expr_planners
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        &self.relation_planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalar.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregate.get(&name.to_ascii_lowercase()).cloned()
    }

    /// `ROW_NUMBER` (Top-N and deduplication); other window functions are refused before
    /// planning.
    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        name.eq_ignore_ascii_case("row_number")
            .then(datafusion_functions_window::row_number::row_number_udwf)
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn get_variable_field(&self, _variable_names: &[String]) -> Option<FieldRef> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.scalar.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.aggregate.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}
