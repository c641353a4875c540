//! Flink's `CREATE TABLE`: columns with Flink type names, computed columns (`c AS expr`),
//! metadata columns (`c TYPE METADATA [FROM 'key'] [VIRTUAL]`), `WATERMARK FOR c AS c -
//! INTERVAL ...`, `PRIMARY KEY (...) NOT ENFORCED`, `PARTITIONED BY (...)` and `WITH (...)`.
//!
//! sqlparser knows none of Flink's extensions, so the statement is read here token by token;
//! expressions inside it (computed columns, the watermark) are handed to sqlparser.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion_sql::sqlparser::ast;
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{user, Result, UserError};
use crate::script::{is_word, location, DIALECT};

/// What kind of column.
#[derive(Debug, Clone)]
pub enum ColumnKind {
    /// Read from the connector.
    Physical,
    /// `name AS expr`: computed from the other columns of each row.
    Computed(Box<ast::Expr>),
    /// `name TYPE METADATA [FROM 'key']`: the connector's metadata (Kafka partition, ...).
    Metadata { key: String },
}

#[derive(Debug, Clone)]
pub struct ColumnDef {
    pub name: String,
    /// `None` for computed columns (their type comes from the expression).
    pub field: Option<Field>,
    pub kind: ColumnKind,
}

/// `WATERMARK FOR column AS expression`.
#[derive(Debug, Clone)]
pub struct WatermarkDef {
    pub column: String,
    pub expr: ast::Expr,
}

/// A parsed `CREATE TABLE`.
#[derive(Debug, Clone)]
pub struct CreateTable {
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDef>,
    pub primary_key: Vec<String>,
    pub partitioned_by: Vec<String>,
    pub options: Vec<(String, String)>,
}

/// A cursor over a statement's tokens.
pub(crate) struct Cursor<'a> {
    tokens: Vec<TokenWithSpan>,
    pos: usize,
    _marker: std::marker::PhantomData<&'a ()>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(tokens: &'a [TokenWithSpan]) -> Self {
        // `>>` closes two nested type brackets (ARRAY<ARRAY<INT>>).
        let mut split = Vec::with_capacity(tokens.len());
        for token in tokens {
            if token.token == Token::ShiftRight {
                let mut gt = token.clone();
                gt.token = Token::Gt;
                split.push(gt.clone());
                split.push(gt);
            } else {
                split.push(token.clone());
            }
        }
        Cursor {
            tokens: split,
            pos: 0,
            _marker: std::marker::PhantomData,
        }
    }

    pub(crate) fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.token)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.pos + ahead).map(|t| &t.token)
    }

    /// An error at the current token.
    pub(crate) fn error(&self, message: impl Into<String>) -> UserError {
        let error = user(message);
        match self.tokens.get(self.pos).or(self.tokens.last()) {
            Some(token) => error.at(location(token)),
            None => error,
        }
    }

    fn expected(&self, what: &str) -> UserError {
        match self.peek() {
            Some(token) => self.error(format!("expected {what}, found '{token}'")),
            None => self.error(format!("expected {what}, found the end of the statement")),
        }
    }

    pub(crate) fn word(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| is_word(t, word)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn words(&mut self, words: &[&str]) -> bool {
        let matches = words
            .iter()
            .enumerate()
            .all(|(i, w)| self.peek_at(i).is_some_and(|t| is_word(t, w)));
        if matches {
            self.pos += words.len();
        }
        matches
    }

    pub(crate) fn expect_word(&mut self, word: &str) -> Result<()> {
        if self.word(word) {
            Ok(())
        } else {
            Err(self.expected(word))
        }
    }

    fn token(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &Token) -> Result<()> {
        if self.token(token) {
            Ok(())
        } else {
            Err(self.expected(&format!("'{token}'")))
        }
    }

    /// An identifier (quoted or not; keywords allowed, as Flink's column names often are).
    pub(crate) fn ident(&mut self, what: &str) -> Result<String> {
        match self.peek() {
            Some(Token::Word(w)) => {
                let name = w.value.clone();
                self.pos += 1;
                Ok(name)
            }
            _ => Err(self.expected(what)),
        }
    }

    /// A possibly qualified name (`catalog.db.table` keeps only the last part).
    pub(crate) fn object_name(&mut self, what: &str) -> Result<String> {
        let mut name = self.ident(what)?;
        while self.token(&Token::Period) {
            name = self.ident(what)?;
        }
        Ok(name)
    }

    pub(crate) fn string(&mut self, what: &str) -> Result<String> {
        match self.peek() {
            Some(Token::SingleQuotedString(s)) | Some(Token::DoubleQuotedString(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.expected(what)),
        }
    }

    fn number(&mut self, what: &str) -> Result<u64> {
        match self.peek() {
            Some(Token::Number(n, _)) => {
                let n = n.parse().map_err(|_| self.expected(what))?;
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.expected(what)),
        }
    }

    /// A `.` (in dotted option keys).
    pub(crate) fn dot(&mut self) -> Result<String> {
        self.expect(&Token::Period).map(|_| ".".to_string())
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    pub(crate) fn expect_end(&self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(token) => Err(self.error(format!("unexpected '{token}'"))),
        }
    }

    /// `(a, b, ...)`.
    fn ident_list(&mut self, what: &str) -> Result<Vec<String>> {
        self.expect(&Token::LParen)?;
        let mut names = vec![self.ident(what)?];
        while self.token(&Token::Comma) {
            names.push(self.ident(what)?);
        }
        self.expect(&Token::RParen)?;
        Ok(names)
    }

    /// The tokens of an expression that ends at a top-level `,` or `)`, parsed by sqlparser.
    fn expr(&mut self, what: &str) -> Result<ast::Expr> {
        let start = self.pos;
        let mut depth = 0i32;
        while let Some(token) = self.peek() {
            match token {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => break,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 0 => break,
                _ if depth == 0 && (is_word(token, "COMMENT")) => break,
                _ => {}
            }
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.expected(what));
        }
        parse_expr(&self.tokens[start..self.pos])
    }

    /// The rest of the tokens.
    pub(crate) fn rest(&self) -> &[TokenWithSpan] {
        &self.tokens[self.pos.min(self.tokens.len())..]
    }
}

pub(crate) fn parse_expr(tokens: &[TokenWithSpan]) -> Result<ast::Expr> {
    let mut parser = Parser::new(&DIALECT).with_tokens_with_locations(tokens.to_vec());
    let expr = parser.parse_expr().map_err(|e| parse_error(&e, tokens))?;
    match parser.peek_token().token {
        Token::EOF => Ok(expr),
        token => Err(user(format!("unexpected '{token}' after the expression"))
            .at(location(&parser.peek_token()))),
    }
}

/// A sqlparser error as a user error (its message carries the line and column).
pub(crate) fn parse_error(
    error: &datafusion_sql::sqlparser::parser::ParserError,
    tokens: &[TokenWithSpan],
) -> UserError {
    let text = error.to_string();
    let text = text
        .strip_prefix("sql parser error: ")
        .unwrap_or(&text)
        .to_string();
    // "... at Line: 3, Column: 7" -> a location.
    let located = text.rfind(" at Line: ").and_then(|i| {
        let rest = &text[i + " at Line: ".len()..];
        let (line, column) = rest.split_once(", Column: ")?;
        Some((
            i,
            crate::error::Location {
                line: line.trim().parse().ok()?,
                column: column.trim().parse().ok()?,
            },
        ))
    });
    // An error at the end of the input points just past the last token.
    let end = tokens.last().map(|t| crate::error::Location {
        line: t.span.end.line,
        column: t.span.end.column,
    });
    match (located, end) {
        (Some((i, at)), _) => user(text[..i].to_string()).at(at),
        (None, Some(end)) if text.ends_with("EOF") => user(text).at(end),
        (None, _) => match tokens.first() {
            Some(token) => user(text).at(location(token)),
            None => user(text),
        },
    }
}

/// Reads `CREATE [TEMPORARY] TABLE ...` (the cursor is at CREATE).
pub(crate) fn parse_create_table(cursor: &mut Cursor) -> Result<CreateTable> {
    cursor.expect_word("CREATE")?;
    cursor.word("TEMPORARY");
    cursor.expect_word("TABLE")?;
    let if_not_exists = cursor.words(&["IF", "NOT", "EXISTS"]);
    let name = cursor.object_name("a table name")?;
    let mut table = CreateTable {
        name,
        if_not_exists,
        columns: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        partitioned_by: Vec::new(),
        options: Vec::new(),
    };
    cursor.expect(&Token::LParen)?;
    loop {
        parse_element(cursor, &mut table)?;
        if cursor.token(&Token::Comma) {
            continue;
        }
        cursor.expect(&Token::RParen)?;
        break;
    }
    if cursor.word("COMMENT") {
        cursor.string("a comment")?;
    }
    if cursor.words(&["PARTITIONED", "BY"]) {
        table.partitioned_by = cursor.ident_list("a partition column")?;
    }
    if cursor.word("WITH") {
        cursor.expect(&Token::LParen)?;
        if !cursor.token(&Token::RParen) {
            loop {
                let key = cursor.string("an option key in quotes ('connector')")?;
                cursor.expect(&Token::Eq)?;
                let value = cursor.string("an option value in quotes")?;
                table.options.push((key, value));
                if cursor.token(&Token::Comma) {
                    continue;
                }
                cursor.expect(&Token::RParen)?;
                break;
            }
        }
    } else if !cursor.at_end() {
        return Err(cursor.expected("WITH ('connector' = '...', ...)"));
    }
    cursor.expect_end()?;
    if table.options.is_empty() {
        return Err(user(format!(
            "table '{}' has no WITH ('connector' = '...') options",
            table.name
        ))
        .hint("e.g. WITH ('connector' = 'filesystem', 'path' = 'data/', 'format' = 'csv')"));
    }
    Ok(table)
}

fn parse_element(cursor: &mut Cursor, table: &mut CreateTable) -> Result<()> {
    if cursor.word("WATERMARK") {
        cursor.expect_word("FOR")?;
        let column = cursor.ident("the watermark's time column")?;
        cursor.expect_word("AS")?;
        let expr = cursor.expr("a watermark expression")?;
        table.watermark = Some(WatermarkDef { column, expr });
        return Ok(());
    }
    if cursor.word("CONSTRAINT") {
        cursor.ident("a constraint name")?;
    }
    if cursor.words(&["PRIMARY", "KEY"]) {
        table.primary_key = cursor.ident_list("a primary key column")?;
        expect_not_enforced(cursor)?;
        return Ok(());
    }
    let name = cursor.ident("a column name")?;
    if cursor.word("AS") {
        let expr = cursor.expr("the computed column's expression")?;
        skip_comment(cursor)?;
        table.columns.push(ColumnDef {
            name,
            field: None,
            kind: ColumnKind::Computed(Box::new(expr)),
        });
        return Ok(());
    }
    let (data_type, mut nullable) = parse_type(cursor)?;
    let mut kind = ColumnKind::Physical;
    loop {
        if cursor.words(&["NOT", "NULL"]) {
            nullable = false;
        } else if cursor.word("NULL") {
            nullable = true;
        } else if cursor.words(&["PRIMARY", "KEY"]) {
            expect_not_enforced(cursor)?;
            table.primary_key = vec![name.clone()];
        } else if cursor.word("METADATA") {
            let key = if cursor.word("FROM") {
                cursor.string("a metadata key in quotes")?
            } else {
                name.clone()
            };
            cursor.word("VIRTUAL");
            kind = ColumnKind::Metadata { key };
        } else if cursor.word("COMMENT") {
            cursor.string("a comment")?;
        } else {
            break;
        }
    }
    table.columns.push(ColumnDef {
        field: Some(Field::new(&name, data_type, nullable)),
        name,
        kind,
    });
    Ok(())
}

fn skip_comment(cursor: &mut Cursor) -> Result<()> {
    if cursor.word("COMMENT") {
        cursor.string("a comment")?;
    }
    Ok(())
}

fn expect_not_enforced(cursor: &mut Cursor) -> Result<()> {
    if cursor.words(&["NOT", "ENFORCED"]) {
        Ok(())
    } else {
        Err(cursor
            .expected("NOT ENFORCED")
            .hint("Flink (and Weir) do not check keys: write PRIMARY KEY (...) NOT ENFORCED"))
    }
}

fn precision_unit(precision: u64) -> TimeUnit {
    match precision {
        0 => TimeUnit::Second,
        1..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

/// Flink's name for an Arrow type (the inverse of [`parse_type`]), for messages.
pub(crate) fn flink_type_name(data_type: &DataType) -> String {
    let precision = |unit: &TimeUnit| weir_operators::text::unit_digits(*unit);
    match data_type {
        DataType::Null => "NULL".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(unit) | DataType::Time64(unit) => format!("TIME({})", precision(unit)),
        DataType::Timestamp(unit, None) => format!("TIMESTAMP({})", precision(unit)),
        DataType::Timestamp(unit, Some(_)) => format!("TIMESTAMP_LTZ({})", precision(unit)),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::List(f) | DataType::LargeList(f) => {
            format!("ARRAY<{}>", flink_type_name(f.data_type()))
        }
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL".into(),
        other => other.to_string(),
    }
}

/// A Flink type; returns the Arrow type and whether `NOT NULL` was part of it (nested types).
pub(crate) fn parse_type(cursor: &mut Cursor) -> Result<(DataType, bool)> {
    let name = cursor.ident("a type name")?.to_ascii_uppercase();
    let optional_len = |cursor: &mut Cursor| -> Result<Option<u64>> {
        if cursor.token(&Token::LParen) {
            let n = cursor.number("a length")?;
            cursor.expect(&Token::RParen)?;
            Ok(Some(n))
        } else {
            Ok(None)
        }
    };
    let data_type = match name.as_str() {
        "STRING" | "VARCHAR" | "CHAR" | "TEXT" => {
            optional_len(cursor)?;
            DataType::Utf8
        }
        "CHARACTER" => {
            cursor.word("VARYING");
            optional_len(cursor)?;
            DataType::Utf8
        }
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TINYINT" => DataType::Int8,
        "SMALLINT" => DataType::Int16,
        "INT" | "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "FLOAT" | "REAL" => DataType::Float32,
        "DOUBLE" => {
            cursor.word("PRECISION");
            DataType::Float64
        }
        "DECIMAL" | "DEC" | "NUMERIC" => {
            let (mut precision, mut scale) = (10u64, 0u64);
            if cursor.token(&Token::LParen) {
                precision = cursor.number("a precision")?;
                if cursor.token(&Token::Comma) {
                    scale = cursor.number("a scale")?;
                }
                cursor.expect(&Token::RParen)?;
            }
            if precision == 0 || precision > 38 || scale > precision {
                return Err(cursor.error(format!(
                    "DECIMAL({precision}, {scale}): precision must be 1 to 38 and scale at most the precision"
                )));
            }
            DataType::Decimal128(precision as u8, scale as i8)
        }
        "DATE" => DataType::Date32,
        "TIME" => {
            optional_len(cursor)?;
            cursor.words(&["WITHOUT", "TIME", "ZONE"]);
            DataType::Time64(TimeUnit::Microsecond)
        }
        "TIMESTAMP" => {
            let unit = precision_unit(optional_len(cursor)?.unwrap_or(6));
            if cursor.words(&["WITH", "LOCAL", "TIME", "ZONE"]) {
                DataType::Timestamp(unit, Some("UTC".into()))
            } else {
                cursor.words(&["WITHOUT", "TIME", "ZONE"]);
                DataType::Timestamp(unit, None)
            }
        }
        "TIMESTAMP_LTZ" => {
            let unit = precision_unit(optional_len(cursor)?.unwrap_or(6));
            DataType::Timestamp(unit, Some("UTC".into()))
        }
        "BYTES" | "BINARY" | "VARBINARY" => {
            optional_len(cursor)?;
            DataType::Binary
        }
        "ARRAY" => {
            cursor.expect(&Token::Lt)?;
            let (element, nullable) = parse_type(cursor)?;
            cursor.expect(&Token::Gt)?;
            DataType::List(Arc::new(Field::new("item", element, nullable)))
        }
        "MAP" => {
            cursor.expect(&Token::Lt)?;
            let (key, _) = parse_type(cursor)?;
            cursor.expect(&Token::Comma)?;
            let (value, nullable) = parse_type(cursor)?;
            cursor.expect(&Token::Gt)?;
            let entries = Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", key, false),
                    Field::new("value", value, nullable),
                ])),
                false,
            );
            DataType::Map(Arc::new(entries), false)
        }
        "ROW" => {
            let close = if cursor.token(&Token::Lt) {
                Token::Gt
            } else {
                cursor.expect(&Token::LParen)?;
                Token::RParen
            };
            let mut fields = Vec::new();
            loop {
                let field = cursor.ident("a ROW field name")?;
                let (data_type, nullable) = parse_type(cursor)?;
                if cursor.word("COMMENT") {
                    cursor.string("a comment")?;
                }
                fields.push(Field::new(field, data_type, nullable));
                if !cursor.token(&Token::Comma) {
                    break;
                }
            }
            cursor.expect(&close)?;
            DataType::Struct(Fields::from(fields))
        }
        other => {
            cursor.pos -= 1;
            return Err(cursor.error(format!("unknown type {other}")).hint(
                "types: STRING, VARCHAR(n), BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, \
                 DECIMAL(p, s), DATE, TIME, TIMESTAMP(p), TIMESTAMP_LTZ(p), BYTES, ARRAY<T>, \
                 MAP<K, V>, ROW<name T, ...>",
            ));
        }
    };
    let nullable = !cursor.words(&["NOT", "NULL"]);
    Ok((data_type, nullable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::split;

    fn create(sql: &str) -> Result<CreateTable> {
        let statement = split(sql).unwrap().remove(0);
        parse_create_table(&mut Cursor::new(&statement.tokens))
    }

    #[test]
    fn reads_flink_ddl() {
        let table = create(
            "CREATE TEMPORARY TABLE IF NOT EXISTS bids (
                auction BIGINT NOT NULL,
                price DECIMAL(10, 2),
                tags ARRAY<ARRAY<STRING>>,
                attrs MAP<STRING, INT>,
                person ROW<name STRING, `dateTime` TIMESTAMP(3)>,
                part INT METADATA FROM 'partition' VIRTUAL,
                ts TIMESTAMP(3),
                doubled AS price * 2 COMMENT 'twice',
                WATERMARK FOR ts AS ts - INTERVAL '5' SECOND,
                PRIMARY KEY (auction) NOT ENFORCED
            ) WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'csv')",
        )
        .unwrap();
        assert_eq!(table.name, "bids");
        assert!(table.if_not_exists);
        assert_eq!(table.columns.len(), 8);
        let field = |i: usize| table.columns[i].field.clone().unwrap();
        assert!(!field(0).is_nullable());
        assert_eq!(field(1).data_type(), &DataType::Decimal128(10, 2));
        assert!(
            matches!(field(2).data_type(), DataType::List(inner) if matches!(inner.data_type(), DataType::List(_)))
        );
        assert!(matches!(field(3).data_type(), DataType::Map(_, _)));
        assert!(matches!(field(4).data_type(), DataType::Struct(f) if f[1].name() == "dateTime"));
        assert!(
            matches!(&table.columns[5].kind, ColumnKind::Metadata { key } if key == "partition")
        );
        assert_eq!(
            field(6).data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert!(
            matches!(&table.columns[7].kind, ColumnKind::Computed(e) if e.to_string() == "price * 2")
        );
        assert_eq!(table.watermark.as_ref().unwrap().column, "ts");
        assert_eq!(table.primary_key, vec!["auction"]);
        assert_eq!(table.options[0], ("connector".into(), "filesystem".into()));
    }

    #[test]
    fn errors_point_at_the_token() {
        let error = create("CREATE TABLE t (a INTEGR) WITH ('connector' = 'x')").unwrap_err();
        assert_eq!(error.message, "unknown type INTEGR");
        assert_eq!(error.location.unwrap().column, 19);
        let error = create("CREATE TABLE t (a INT)").unwrap_err();
        assert!(error.message.contains("no WITH"), "{error}");
        let error =
            create("CREATE TABLE t (a INT, PRIMARY KEY (a)) WITH ('connector' = 'x')").unwrap_err();
        assert!(error.hint.unwrap().contains("NOT ENFORCED"));
    }
}
