//! `docs/functions.md` is generated from `weir_sql::functions::BUILTINS`, the table that also
//! decides which calls are refused; this test fails when the two disagree.
//! `WEIR_UPDATE_DOCS=1 cargo test -p weir-sql --test functions_doc` rewrites the file.

use std::path::PathBuf;

use weir_sql::functions::{Support, BUILTINS};

fn render() -> String {
    let mut text = String::from(
        "# Flink's built-in functions in Weir\n\n\
         Generated from `sql/src/functions/builtins.rs` (`WEIR_UPDATE_DOCS=1 cargo test -p \
         weir-sql --test functions_doc`). Every function of Flink 2.3's \"System (Built-in) \
         Functions\" page, in its order, and how Weir provides it:\n\n\
         - **syntax**: SQL syntax or an operator, with Flink's meaning;\n\
         - **DataFusion**: DataFusion's function of that name, whose rules are Flink's;\n\
         - **Weir**: Weir's implementation of Flink's rules (where DataFusion's differ or it \
         has none);\n\
         - **rewrite**: rewritten onto other functions before planning;\n\
         - **not yet**: refused with this reason, naming the function.\n\n\
         Casts follow Flink's rules for every expression (`operators/src/cast.rs`). Where Weir \
         deliberately differs from Flink, the README's \"Differences from Flink\" says so.\n",
    );
    let mut category = "";
    for builtin in BUILTINS {
        if builtin.category != category {
            category = builtin.category;
            text.push_str(&format!(
                "\n## {category}\n\n| function | in Weir |\n|---|---|\n"
            ));
        }
        let support = match builtin.support {
            Support::Syntax => "syntax".to_string(),
            Support::DataFusion => "DataFusion".to_string(),
            Support::Weir => "Weir".to_string(),
            Support::Rewrite => "rewrite".to_string(),
            Support::NotYet(why) => format!("not yet: {why}"),
        };
        text.push_str(&format!(
            "| `{}` | {support} |\n",
            builtin.name.replace('|', "\\|")
        ));
    }
    let total = BUILTINS.len();
    let missing = BUILTINS
        .iter()
        .filter(|b| matches!(b.support, Support::NotYet(_)))
        .count();
    text.push_str(&format!(
        "\n{} of {total} supported; {missing} not yet.\n",
        total - missing
    ));
    text
}

#[test]
fn functions_doc_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/functions.md");
    let rendered = render();
    if std::env::var_os("WEIR_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == rendered,
        "docs/functions.md is out of date: run WEIR_UPDATE_DOCS=1 cargo test -p weir-sql --test functions_doc"
    );
}

#[test]
fn every_function_said_to_be_supported_is_known_to_the_planner() {
    let context = weir_sql::catalog::SessionContext::default();
    let mut unknown = Vec::new();
    for builtin in BUILTINS {
        let plain_name = builtin
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
        let supported = matches!(builtin.support, Support::DataFusion | Support::Weir);
        if plain_name && supported && !context.has_function(builtin.name) {
            unknown.push(builtin.name);
        }
    }
    assert!(
        unknown.is_empty(),
        "listed as supported but no function has these names: {unknown:?}"
    );
}
