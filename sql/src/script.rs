//! Splitting a SQL script into statements, with the location of each token.
//!
//! Statements end at a top-level `;`. `EXECUTE STATEMENT SET BEGIN ... END;` (and the older
//! `BEGIN STATEMENT SET; ... END;`) is one statement holding several `INSERT`s. Comments
//! (`--`, `/* */`) are whitespace, but a hint right after `SELECT` (`/*+ ... */`) stays for
//! the parser.

use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::keywords::Keyword;
use datafusion_sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::error::{user, Location, Result};

/// The dialect used for tokens and expressions (Flink's backquoted identifiers included).
pub(crate) const DIALECT: GenericDialect = GenericDialect {};

/// One statement of a script: its tokens (whitespace and comments dropped) and its text.
#[derive(Debug, Clone)]
pub struct Statement {
    pub tokens: Vec<TokenWithSpan>,
    pub text: String,
}

impl Statement {
    /// Where the statement starts.
    pub fn location(&self) -> Location {
        self.tokens
            .first()
            .map(location)
            .unwrap_or(Location { line: 1, column: 1 })
    }
}

pub(crate) fn location(token: &TokenWithSpan) -> Location {
    Location {
        line: token.span.start.line,
        column: token.span.start.column,
    }
}

/// True if `token` is the keyword or word `word` (case-insensitive, unquoted).
pub(crate) fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// Byte offset of a 1-based line/column position in `text`.
fn offset(line_starts: &[usize], text: &str, location: Location) -> usize {
    let line = (location.line.max(1) - 1) as usize;
    let start = line_starts.get(line).copied().unwrap_or(text.len());
    text[start..]
        .char_indices()
        .nth((location.column.max(1) - 1) as usize)
        .map(|(i, _)| start + i)
        .unwrap_or(text.len())
}

/// Splits `text` into statements.
pub fn split(text: &str) -> Result<Vec<Statement>> {
    let tokens = Tokenizer::new(&DIALECT, text)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| {
            user(format!("cannot read the SQL: {}", e.message)).at(Location {
                line: e.location.line,
                column: e.location.column,
            })
        })?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut statements = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    // Inside a statement set, `;` separates its INSERTs instead of ending the statement.
    let mut in_set = false;
    let finish = |current: &mut Vec<TokenWithSpan>, statements: &mut Vec<Statement>| {
        if let (Some(first), Some(last)) = (current.first(), current.last()) {
            let start = offset(&line_starts, text, location(first));
            let end = offset(
                &line_starts,
                text,
                Location {
                    line: last.span.end.line,
                    column: last.span.end.column,
                },
            );
            statements.push(Statement {
                tokens: std::mem::take(current),
                text: text[start..end.max(start)].to_string(),
            });
        }
    };
    for token in tokens {
        match &token.token {
            // A hint comment right after SELECT (`SELECT /*+ STATE_TTL(...) */`) stays for
            // the parser to read; anywhere else a comment is whitespace.
            Token::Whitespace(Whitespace::MultiLineComment(comment))
                if comment.starts_with('+')
                    && current.last().is_some_and(|t| is_word(&t.token, "SELECT")) =>
            {
                current.push(token)
            }
            Token::Whitespace(_) => continue,
            Token::SemiColon if !in_set => {
                // `BEGIN STATEMENT SET;` opens a set that ends with `END;`.
                let words: Vec<&Token> = current.iter().map(|t| &t.token).collect();
                if words.len() == 3
                    && is_word(words[0], "BEGIN")
                    && is_word(words[1], "STATEMENT")
                    && is_word(words[2], "SET")
                {
                    in_set = true;
                    current.push(token);
                    continue;
                }
                finish(&mut current, &mut statements);
            }
            Token::SemiColon => current.push(token),
            Token::Word(w) if w.keyword == Keyword::BEGIN && starts_statement_set(&current) => {
                in_set = true;
                current.push(token);
            }
            Token::Word(w) if w.keyword == Keyword::END && in_set => {
                in_set = false;
                current.push(token);
            }
            _ => current.push(token),
        }
    }
    if in_set {
        return Err(user("a statement set is not closed with END"));
    }
    finish(&mut current, &mut statements);
    Ok(statements)
}

fn starts_statement_set(current: &[TokenWithSpan]) -> bool {
    current.len() == 3
        && is_word(&current[0].token, "EXECUTE")
        && is_word(&current[1].token, "STATEMENT")
        && is_word(&current[2].token, "SET")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_and_keeps_statement_sets_whole() {
        let sql = "-- a comment\nSET 'a' = 'b';\n/* block */ SELECT 1;\n\
                   EXECUTE STATEMENT SET BEGIN INSERT INTO x SELECT 1; INSERT INTO y SELECT 2; END;\n\
                   SELECT ';' AS semicolon";
        let statements = split(sql).unwrap();
        assert_eq!(statements.len(), 4);
        assert_eq!(statements[0].text, "SET 'a' = 'b'");
        assert_eq!(statements[1].text, "SELECT 1");
        assert_eq!(
            statements[1].location(),
            Location {
                line: 3,
                column: 13
            }
        );
        assert!(statements[2]
            .text
            .starts_with("EXECUTE STATEMENT SET BEGIN"));
        assert!(statements[2].text.ends_with("END"));
        assert_eq!(statements[3].text, "SELECT ';' AS semicolon");
    }

    #[test]
    fn unclosed_statement_set_is_an_error() {
        assert!(split("EXECUTE STATEMENT SET BEGIN INSERT INTO x SELECT 1;").is_err());
    }
}
