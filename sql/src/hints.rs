//! Flink's `STATE_TTL` query hint: `SELECT /*+ STATE_TTL('o' = '1d', 'c' = '12h') */ ...`
//! sets the state TTL of the regular joins and group aggregations whose input is the table,
//! view or alias named, in place of `table.exec.state.ttl` (a zero TTL keeps the state for
//! the job's lifetime). As in Flink, a key must name a relation of its `SELECT`'s `FROM`, and
//! a view's own hints go with it wherever it is used.
//!
//! The names are matched on the plan: every join input and aggregation input of the statement
//! that is that relation gets the TTL, so one name given two TTLs (in two `SELECT`s of one
//! statement) is refused, and a name that no join or aggregation reads is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use datafusion_expr::LogicalPlan;
use datafusion_sql::sqlparser::ast::{
    ObjectName, Query, SetExpr, Statement, TableFactor, TableWithJoins, Visit, Visitor,
};
use datafusion_sql::sqlparser::tokenizer::{Token, Tokenizer};
use std::ops::ControlFlow;

use crate::error::{user, Result, UserError};
use crate::script::DIALECT;

/// The `STATE_TTL` hints of one statement: relation name -> TTL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateTtlHints {
    ttls: BTreeMap<String, Duration>,
}

impl StateTtlHints {
    /// The hints of `statement`'s `SELECT`s, with those of the views it reads (`view_hints`
    /// gives a view's). Errors: a hint Weir does not know, a malformed `STATE_TTL`, a key
    /// naming no relation of its `FROM`, a bad duration, one name given two TTLs.
    pub fn of_statement(
        statement: &Statement,
        view_hints: &dyn Fn(&str) -> Option<StateTtlHints>,
    ) -> Result<Self> {
        let mut collector = Collector {
            hints: StateTtlHints::default(),
            view_hints,
        };
        match statement.visit(&mut collector) {
            ControlFlow::Break(error) => Err(error),
            ControlFlow::Continue(()) => Ok(collector.hints),
        }
    }

    /// The TTL hinted for relation `name`.
    pub fn get(&self, name: &str) -> Option<Duration> {
        self.ttls.get(name).copied()
    }

    /// The hinted names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ttls.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.ttls.is_empty()
    }

    fn add(&mut self, name: &str, ttl: Duration) -> Result<()> {
        match self.ttls.insert(name.to_string(), ttl) {
            Some(other) if other != ttl => Err(user(format!(
                "STATE_TTL gives '{name}' two TTLs in one statement ({other:?} and {ttl:?})"
            ))
            .hint("give one of the two relations another alias")),
            _ => Ok(()),
        }
    }
}

/// The name a join or aggregation input is hinted by: the table, view or alias it reads,
/// seen through projections and filters (which column pruning and predicates put there).
pub fn relation_name(plan: &LogicalPlan) -> Option<&str> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => Some(alias.alias.table()),
        LogicalPlan::TableScan(scan) => Some(scan.table_name.table()),
        LogicalPlan::Projection(p) => relation_name(&p.input),
        LogicalPlan::Filter(f) => relation_name(&f.input),
        _ => None,
    }
}

struct Collector<'a> {
    hints: StateTtlHints,
    view_hints: &'a dyn Fn(&str) -> Option<StateTtlHints>,
}

impl Visitor for Collector<'_> {
    type Break = UserError;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<UserError> {
        let mut selects = vec![query.body.as_ref()];
        while let Some(body) = selects.pop() {
            match body {
                SetExpr::Select(select) => {
                    let from = from_names(&select.from);
                    for hint in &select.optimizer_hints {
                        if let Err(error) = self.hint(&hint.text, &from) {
                            return ControlFlow::Break(error);
                        }
                    }
                }
                SetExpr::SetOperation { left, right, .. } => {
                    selects.extend([left.as_ref(), right.as_ref()])
                }
                // Nested queries are visited on their own.
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<UserError> {
        if let TableFactor::Table { name, .. } = factor {
            if let Some(hints) = last_name(name).and_then(|v| (self.view_hints)(&v)) {
                for (name, ttl) in hints.ttls {
                    if let Err(error) = self.hints.add(&name, ttl) {
                        return ControlFlow::Break(error);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

impl Collector<'_> {
    /// One hint comment's text (`STATE_TTL('a' = '1d', ...)`, several hints possibly) of a
    /// `SELECT` whose `FROM` names `from`.
    fn hint(&mut self, text: &str, from: &BTreeSet<String>) -> Result<()> {
        let malformed = || {
            user(format!("cannot read the hint /*+{text}*/"))
                .hint("e.g. /*+ STATE_TTL('orders' = '1d', 'customers' = '12h') */")
        };
        let tokens: Vec<Token> = Tokenizer::new(&DIALECT, text)
            .tokenize()
            .map_err(|_| malformed())?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let mut at = 0;
        while at < tokens.len() {
            let Token::Word(word) = &tokens[at] else {
                return Err(malformed());
            };
            if !word.value.eq_ignore_ascii_case("STATE_TTL") {
                return Err(user(format!(
                    "the hint {} is not supported (Weir knows STATE_TTL)",
                    word.value
                )));
            }
            at += 1;
            if tokens.get(at) != Some(&Token::LParen) {
                return Err(malformed());
            }
            at += 1;
            let mut options = 0;
            loop {
                match &tokens[at..] {
                    [Token::SingleQuotedString(key), Token::Eq, Token::SingleQuotedString(value), rest @ ..] =>
                    {
                        if !from.contains(key) {
                            return Err(user(format!(
                                "STATE_TTL: '{key}' is not a table, view or alias of this SELECT's FROM ({})",
                                from.iter().cloned().collect::<Vec<_>>().join(", ")
                            )));
                        }
                        let ttl =
                            weir_connectors::options::parse_duration(value).ok_or_else(|| {
                                user(format!(
                                    "STATE_TTL: '{value}' (for '{key}') is not a duration"
                                ))
                                .hint("e.g. '1d', '12h', '30 min', '90s'")
                            })?;
                        self.hints.add(key, ttl)?;
                        options += 1;
                        at = tokens.len() - rest.len();
                        match rest.first() {
                            Some(Token::Comma) => at += 1,
                            Some(Token::RParen) => break,
                            _ => return Err(malformed()),
                        }
                    }
                    _ => return Err(malformed()),
                }
            }
            if options == 0 {
                return Err(malformed());
            }
            at += 1;
            if tokens.get(at) == Some(&Token::Comma) {
                at += 1;
            }
        }
        Ok(())
    }
}

/// The unquoted last part of a table or view name (`db.t` and `` `t` `` are `t`).
fn last_name(name: &ObjectName) -> Option<String> {
    name.0.last().map(|part| match part.as_ident() {
        Some(ident) => ident.value.clone(),
        None => part.to_string(),
    })
}

/// The names the relations of a `FROM` go by: aliases, else table or view names (those of a
/// parenthesised join included).
fn from_names(from: &[TableWithJoins]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut tables: Vec<&TableWithJoins> = from.iter().collect();
    while let Some(table) = tables.pop() {
        let factors =
            std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation));
        for factor in factors {
            let name = match factor {
                TableFactor::Table { name, alias, .. } => match alias {
                    Some(alias) => Some(alias.name.value.clone()),
                    None => last_name(name),
                },
                TableFactor::NestedJoin {
                    table_with_joins,
                    alias,
                } => {
                    tables.push(table_with_joins);
                    alias.as_ref().map(|a| a.name.value.clone())
                }
                TableFactor::Derived { alias, .. }
                | TableFactor::Function { alias, .. }
                | TableFactor::TableFunction { alias, .. }
                | TableFactor::UNNEST { alias, .. } => alias.as_ref().map(|a| a.name.value.clone()),
                _ => None,
            };
            names.extend(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_sql::sqlparser::parser::Parser;

    fn hints(sql: &str) -> Result<StateTtlHints> {
        let statement = Parser::new(&DIALECT)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .expect("parses");
        StateTtlHints::of_statement(&statement, &|_| None)
    }

    #[test]
    fn keys_name_tables_or_aliases_of_the_from() {
        let got = hints(
            "SELECT /*+ STATE_TTL('o' = '1d', 'customers'='12h') */ * FROM orders o JOIN customers ON o.c = customers.c",
        )
        .unwrap();
        assert_eq!(got.get("o"), Some(Duration::from_secs(86_400)));
        assert_eq!(got.get("customers"), Some(Duration::from_secs(43_200)));
        assert_eq!(got.get("orders"), None, "the alias hides the table's name");
    }

    #[test]
    fn bad_hints_are_refused_with_what_is_wrong() {
        let error = |sql: &str| hints(sql).unwrap_err().message;
        assert!(error("SELECT /*+ STATE_TTL('x' = '1d') */ * FROM orders o")
            .contains("'x' is not a table, view or alias of this SELECT's FROM (o)"));
        assert!(
            error("SELECT /*+ STATE_TTL('o' = 'soon') */ * FROM orders o")
                .contains("'soon' (for 'o') is not a duration")
        );
        assert!(error("SELECT /*+ BROADCAST(o) */ * FROM orders o")
            .contains("BROADCAST is not supported"));
        assert!(error("SELECT /*+ STATE_TTL() */ * FROM orders o").contains("cannot read"));
        assert!(error("SELECT /*+ STATE_TTL('o' '1d') */ * FROM orders o").contains("cannot read"));
        assert!(error(
            "SELECT /*+ STATE_TTL('o' = '1d') */ * FROM orders o WHERE o.k IN (SELECT /*+ STATE_TTL('o' = '2d') */ k FROM keys o)"
        )
        .contains("two TTLs"));
    }

    #[test]
    fn a_parenthesised_join_names_its_relations() {
        let got = hints(
            "SELECT /*+ STATE_TTL('a' = '1h') */ * FROM (a JOIN b ON a.k = b.k) JOIN c ON a.k = c.k",
        )
        .unwrap();
        assert_eq!(got.get("a"), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn a_view_brings_its_hints() {
        let statement = Parser::new(&DIALECT)
            .try_with_sql("SELECT * FROM `v`")
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        let mut view = StateTtlHints::default();
        view.add("a", Duration::from_secs(60)).unwrap();
        let got =
            StateTtlHints::of_statement(&statement, &|name| (name == "v").then(|| view.clone()))
                .unwrap();
        assert_eq!(got.get("a"), Some(Duration::from_secs(60)));
    }
}
